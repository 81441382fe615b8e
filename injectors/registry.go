package injectors

import (
	"context"

	"gopkg.in/yaml.v3"

	"github.com/credgate/credgate/internal/module"
)

// Module is an injector plugin: the name rules use in `as: NAME`, and a
// constructor returning a new, unconfigured Injector (usually a pointer
// to a struct whose yaml-tagged fields are the injector's settings).
type Module struct {
	// Name is the registry key. It must be unique and non-empty.
	Name string
	// New returns a fresh Injector for one rule.
	New func() Injector
	// Doc is one line saying what the plugin does, printed by
	// `credgate plugins`.
	Doc string
	// SettingDocs maps each setting (a yaml key of the value New returns)
	// to one line for `credgate plugins`; keys without a line are listed
	// with their type only.
	SettingDocs map[string]string
}

// Registry maps injector names to modules. The zero value is not usable;
// use NewRegistry. Most code uses the package-level functions, which act
// on DefaultRegistry; tests build their own Registry.
type Registry struct {
	r *module.Registry[Injector]
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry {
	return &Registry{r: module.New[Injector]("injector")}
}

// DefaultRegistry holds the compiled-in injectors. The built-ins (header,
// bearer, basic, query) are registered by this package's init; plugins
// register themselves from their own packages, listed in injectors/all.
var DefaultRegistry = NewRegistry()

// Register adds m. It panics if m.Name is empty, m.New is nil or the name
// is already registered.
func (r *Registry) Register(m Module) {
	r.r.Register(m.Name, m.New, module.Info{Doc: m.Doc, SettingDocs: m.SettingDocs})
}

// Lookup returns the module registered under name.
func (r *Registry) Lookup(name string) (Module, bool) {
	f, ok := r.r.Lookup(name)
	if !ok {
		return Module{}, false
	}
	in := r.r.Info(name)
	return Module{Name: name, New: f, Doc: in.Doc, SettingDocs: in.SettingDocs}, true
}

// Names returns the registered injector names, sorted.
func (r *Registry) Names() []string { return r.r.Names() }

// Load builds the injector registered under name from its settings:
// New(), strict decoding of settings (unknown keys are errors; a nil node
// means no settings), Provision() if it is a Provisioner, Validate() if it
// is a Validator, and Cleanup() if either fails.
//
// Decoding errors are a *yaml.TypeError whose messages start with
// "line N: ". Provision and Validate errors are returned as the injector
// wrote them.
func (r *Registry) Load(ctx context.Context, name string, settings *yaml.Node) (Injector, error) {
	return r.r.Load(ctx, name, settings)
}

// Register adds m to DefaultRegistry; call it from an init function. It
// panics if m.Name is empty, m.New is nil or the name is taken.
func Register(m Module) { DefaultRegistry.Register(m) }

// Lookup returns the module registered in DefaultRegistry under name.
func Lookup(name string) (Module, bool) { return DefaultRegistry.Lookup(name) }

// Names returns the injector names in DefaultRegistry, sorted.
func Names() []string { return DefaultRegistry.Names() }

// Load builds an injector from DefaultRegistry; see Registry.Load.
func Load(ctx context.Context, name string, settings *yaml.Node) (Injector, error) {
	return DefaultRegistry.Load(ctx, name, settings)
}
