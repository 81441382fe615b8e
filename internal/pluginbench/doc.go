// Package pluginbench holds the per-plugin benchmark of the warm-cache
// request path (issue 15: "each plugin at a warm cache adds ≤ 5 µs per
// request over the plain bearer injector"). It has no code of its own:
// the benchmark is in its test file, in a package that may import every
// plugin (through providers/all and injectors/all) without a plugin
// importing another.
package pluginbench
