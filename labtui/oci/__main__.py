"""`python -m labtui.oci ARGS`: the OCI runtime command (installed as /usr/local/bin/labtui-oci)."""

from labtui.oci.main import entry

entry()
