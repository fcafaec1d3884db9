"""The process-runtime node: a node agent that runs the pods bound to its Node as local processes.

`python -m lepton_cluster.procnode --name local-0` registers the Node, keeps its Lease and Ready
condition fresh and runs every pod scheduled to it in its own network, mount, UTS and PID namespaces
(docs/procnode.md). Development and single-machine tooling; not part of the Helm chart.
"""
