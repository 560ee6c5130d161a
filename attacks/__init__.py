"""attacks: see ../shared/DESIGN.md; the mode lands with its own issue."""
