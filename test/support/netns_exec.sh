#!/bin/sh
# netns_exec.sh NETNS CGROUP_DIR PROGRAM ARGS...
#
# Runs PROGRAM in the network namespace NETNS (made by `ip netns add`), in a mount
# namespace of its own where /sys is that network namespace's sysfs (so /sys/class/net
# lists its links, as a port program on its own bridge needs) and /sys/fs/cgroup is still
# the machine's cgroup hierarchy (so liblxc finds it). `ip netns exec` would mount the
# sysfs too, but over the cgroup hierarchies, hiding them: this is Lab::port's recipe
# (native/ampule_port/tests/common/lab.rs). CGROUP_DIR is an empty directory the caller
# made and removes: the hierarchy is bound there aside while the sysfs is mounted.
#
# Everything PROGRAM starts (a BEAM, its epmd, its port program, containers) stays in
# both namespaces; mounts made there are private to them and go with them.
set -e
ns=$1
cg=$2
shift 2
exec unshare -m --propagation private /bin/sh -c '
  ns=$1; cg=$2; shift 2
  mount --rbind /sys/fs/cgroup "$cg"
  exec nsenter --net="/var/run/netns/$ns" /bin/sh -c "
    mount -t sysfs sysfs /sys && mount --rbind \"\$0\" /sys/fs/cgroup && umount -l \"\$0\" && exec \"\$@\"
  " "$cg" "$@"
' netns_exec "$ns" "$cg" "$@"
