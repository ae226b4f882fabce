"""Dataset manifests, request (ids) files, synthetic generators and marking."""
