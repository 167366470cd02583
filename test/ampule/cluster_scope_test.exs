defmodule Ampule.ClusterScopeTest do
  # Ampule.Cluster and Ampule's :pg scope, on this node alone (no container, no root).
  # Not async: it kills the application's Ampule.Cluster.
  use ExUnit.Case, async: false

  import Ampule.Test.Host, only: [wait_until: 2]

  test "Ampule.Cluster exiting leaves the :pg scope up, and its successor is a member again" do
    scope = Process.whereis(Ampule.Cluster.scope())
    cluster = Process.whereis(Ampule.Cluster)
    assert cluster in :pg.get_local_members(Ampule.Cluster.scope(), :clusters)

    # On OTP 25.2, a process that monitors a scope and is a member of it crashed the scope
    # when it exited; Ampule.Cluster only joins, a linked process of its own monitors.
    Process.exit(cluster, :kill)
    assert wait_until(fn -> Process.whereis(Ampule.Cluster) not in [nil, cluster] end, 5_000)
    assert Process.whereis(Ampule.Cluster.scope()) == scope

    assert wait_until(
             fn ->
               :pg.get_local_members(Ampule.Cluster.scope(), :clusters) ==
                 [Process.whereis(Ampule.Cluster)]
             end,
             5_000
           )
  end
end
