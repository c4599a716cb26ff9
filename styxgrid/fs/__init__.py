"""FUSE for styxgrid: mount any 9P2000 server (a scheduler, `styxgrid exportfs`)
as a local folder, so the shell drives the grid with echo, cat, ls and cp.

Imported as `styxgrid.fs` (setup.cfg maps this folder there).
"""
