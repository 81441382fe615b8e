package cli

// The tests load policies that use the standard plugins, as cmd/credgate
// compiles them in.
import (
	_ "github.com/credgate/credgate/injectors/all"
	_ "github.com/credgate/credgate/providers/all"
)
