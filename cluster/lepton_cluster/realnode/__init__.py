"""Real nodes for the local cluster: a kubelet and a containerd each, on this machine.

`plan` and `render` are pure (names, addresses, ports, configuration files); `image` builds the
local pause/busybox images; `cgroups`, `network`, `mounts` and `machine` touch the machine;
`node` starts, stops and tears down. See docs/cluster.md, "Real nodes".
"""
