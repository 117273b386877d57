"""labtui as an OCI runtime (docs/oci-runtime.md): a bundle's config.json checked (spec.py), the
container's process set up from it (child.py), runc's verbs (runtime.py), and exec (joiner.py).

spec.py imports nothing of the others; child.py imports spec; joiner.py imports child; runtime.py
imports all three (joiner and child inside functions); nothing here imports runtime back except
joiner, inside its run().
"""
