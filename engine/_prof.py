import os
import time

_ON = os.path.exists("/tmp/ltprof.on")


def mark(label: str) -> None:
    if _ON:
        fd = os.open("/tmp/ltprof.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(fd, f"{time.clock_gettime(time.CLOCK_MONOTONIC):.6f} {os.getpid()} {label}\n".encode())
        os.close(fd)
