import Config

# The suite's ports use the defaults (bridge ampule0, 10.213.57.0/24, /var/lib/ampule)
# unless AMPULE_BRIDGE, AMPULE_SUBNET or AMPULE_STATE_DIR say otherwise, so that two
# checkouts can run their suites on one machine without meeting (see `script/test`).
if config_env() == :test do
  for {key, var} <- [bridge: "AMPULE_BRIDGE", subnet: "AMPULE_SUBNET", state_dir: "AMPULE_STATE_DIR"],
      value = System.get_env(var) do
    config :ampule, [{key, value}]
  end
end
