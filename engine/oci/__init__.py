"""labtui as an OCI runtime (docs/oci-runtime.md): a bundle's config.json checked (spec.py), the
container's process set up from it (child.py), exec's joining process (joiner.py), and runc's
verbs (runtime.py). Each imports only the ones before it in that list.
"""
