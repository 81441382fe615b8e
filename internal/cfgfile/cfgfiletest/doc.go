// Package cfgfiletest makes, for tests, the files a reader of a
// configured path must refuse without reading (internal/cfgfile): a named
// pipe, a link to /dev/zero and a file over a bound.
package cfgfiletest
