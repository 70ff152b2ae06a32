"""The hybridnet container image, built without a registry (``make image``): see build.py."""
