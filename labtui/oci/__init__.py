"""labtui-oci: labtui's engine behind runc's command line, for podman and conmon (docs/oci-runtime.md)."""
