// Wrapper module: builds the etcd server, whose own go.mod uses relative replaces.
module lepton.ai/cluster/etcd

go 1.24.0

require go.etcd.io/etcd/server/v3 v3.6.8
