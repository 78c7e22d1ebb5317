"""HDF5 in and out: robomimic / Isaac Lab Mimic and GenSim2 VPL layouts (export), robomimic / Isaac Lab Mimic
demos into a raygen dataset (import)."""
