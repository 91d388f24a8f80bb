// Command axon serves the example Echo service with Axon's standard plugin
// set, and calls services. A service of your own needs only this main with
// its module in place of echo.Module.
package main

import (
	"os"

	"github.com/axonrpc/axon/app"
	"github.com/axonrpc/axon/examples/echo"
)

func main() {
	os.Exit(app.Main(os.Args[1:], os.Stdout, os.Stderr, echo.Module))
}
