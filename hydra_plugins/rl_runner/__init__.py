"""The runner's Hydra plugins. Hydra instantiates a sweeper or launcher only from this namespace
(`hydra_plugins`) and imports every module here at start-up that does not begin with `_`, so
the plugins live in `_`-modules: nothing is imported until a config names one (an optional
extra's package may be missing)."""
