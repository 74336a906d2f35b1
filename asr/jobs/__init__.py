"""`python -m asr job`: recognise an archive on a Ray cluster, resumably (Ray is an optional extra)."""
