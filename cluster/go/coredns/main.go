// CoreDNS with only the plugins the local cluster's DNS needs: bind (our fabric address only), ready,
// errors, and kubernetes (cluster names from the API). No forward plugin is compiled in: no query
// leaves the machine.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/ready"
	"github.com/coredns/coredns/coremain"
)

// The directives compiled in, in CoreDNS's own order (plugin.cfg).
var directives = []string{"bind", "ready", "errors", "kubernetes"}

func init() { dnsserver.Directives = directives }

func main() { coremain.Run() }
