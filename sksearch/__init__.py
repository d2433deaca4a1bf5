"""sksearch: search the Selective Kernel network design space."""
__version__ = "0.1.0"
