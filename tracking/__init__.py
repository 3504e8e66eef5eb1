"""Where runs are recorded and how they are read back: settings, one reader per store, stored-config upgrades.

Experiments (which write runs through Sacred's observers) and the analysis (which reads them) both use this
package; neither reaches into the other. It knows Sacred's store layouts, not Sacred itself, and gtn_core knows
nothing of it.
"""
