"""rctr.core: the leaf package every other part of rctr builds on.

It holds the syscall wrappers (ctypes, in one place), the error classes, the
on-disk helpers (atomic writes, XDG paths) and process identity.  It imports
nothing but the standard library, and its modules stay lean because the
runtime imports them on the start-up path of every container.
"""
