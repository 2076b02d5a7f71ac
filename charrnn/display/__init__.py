"""Drawings that both the command line and the Python API show: training progress (rich).

The one place outside the command layer that may use rich; like the rest of the core it
never prints on its own: it draws on the console it is given.
"""
