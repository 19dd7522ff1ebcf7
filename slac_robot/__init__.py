"""slac-robot: SLAC on a ROBEL D'Claw turning a valve, in simulation and on hardware.

The environment is registered with Gymnasium, so that other RL libraries can use it:
    gymnasium.make("slac_robot/ValveTurn-v0", overrides=["task=three_goal"])
"""

import gymnasium

ENV_ID = "slac_robot/ValveTurn-v0"

if ENV_ID not in gymnasium.registry:
    gymnasium.register(id=ENV_ID, entry_point="slac_robot.backends:make_registered_env")
