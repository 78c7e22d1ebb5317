"""Isaac Sim 5.x backend (RTX GPU). isaacsim is imported only inside isaac/sim.py, in the child."""
