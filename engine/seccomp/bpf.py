"""Classic BPF disassembly of a compiled filter (for `labtui seccomp show --format bpf`)."""

from __future__ import annotations

import errno as errno_mod
import struct

_SECCOMP_DATA = {0: "nr", 4: "arch", 8: "instruction_pointer", 12: "instruction_pointer_hi"}
for _i in range(6):
    _SECCOMP_DATA[16 + 8 * _i] = f"args[{_i}]"
    _SECCOMP_DATA[20 + 8 * _i] = f"args[{_i}]_hi"
_RET = {0x80000000: "KILL_PROCESS", 0x00000000: "KILL_THREAD", 0x00030000: "TRAP", 0x00050000: "ERRNO",
        0x7FC00000: "USER_NOTIF", 0x7FF00000: "TRACE", 0x7FFC0000: "LOG", 0x7FFF0000: "ALLOW"}
_JMP = {0x00: "ja", 0x10: "jeq", 0x20: "jgt", 0x30: "jge", 0x40: "jset"}
_ALU = {0x00: "add", 0x10: "sub", 0x20: "mul", 0x30: "div", 0x40: "or", 0x50: "and", 0x60: "lsh",
        0x70: "rsh", 0x80: "neg", 0x90: "mod", 0xA0: "xor"}


def ret_text(k: int) -> str:
    act = k & 0xFFFF0000
    name = _RET.get(act, f"{act:#x}")
    if name == "ERRNO":
        return f"ERRNO({errno_mod.errorcode.get(k & 0xFFFF, k & 0xFFFF)})"
    return name if not k & 0xFFFF else f"{name}({k & 0xFFFF})"


def disassemble(prog: bytes) -> list[str]:
    """Classic BPF (struct sock_filter: u16 code, u8 jt, u8 jf, u32 k) as text, one line each."""
    out = []
    n = len(prog) // 8
    for pc in range(n):
        code, jt, jf, k = struct.unpack_from("=HBBI", prog, pc * 8)
        cls = code & 0x07
        if cls == 0x00 and code & 0xE0 == 0x20:  # ld [k]
            text = f"ld  [{k}]  ; {_SECCOMP_DATA.get(k, '')}"
        elif cls == 0x00 and code & 0xE0 == 0x60:
            text = f"ld  M[{k}]"
        elif cls == 0x00 and code & 0xE0 == 0x00:
            text = f"ld  #{k:#x}"
        elif cls == 0x01:
            text = f"ldx M[{k}]" if code & 0xE0 == 0x60 else f"ldx #{k:#x}"
        elif cls in (0x02, 0x03):
            text = f"{'st' if cls == 2 else 'stx'} M[{k}]"
        elif cls == 0x04:
            src = "x" if code & 0x08 else f"#{k:#x}"
            text = f"{_ALU.get(code & 0xF0, '?')} {src}"
        elif cls == 0x05:
            op = _JMP.get(code & 0xF0, "j?")
            if op == "ja":
                text = f"ja  {pc + 1 + k}"
            else:
                src = "x" if code & 0x08 else f"#{k:#x}"
                text = f"{op} {src}, {pc + 1 + jt}, {pc + 1 + jf}"
        elif cls == 0x06:
            text = "ret a" if code & 0x18 == 0x10 else f"ret #{k:#010x}  ; {ret_text(k)}"
        elif cls == 0x07:
            text = "tax" if code & 0xF8 == 0x00 else "txa"
        else:
            text = f".word {code:#06x} {jt} {jf} {k:#x}"
        out.append(f"{pc:4d}: {text}")
    return out
