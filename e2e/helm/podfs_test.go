package helm_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
)

// podFixtures are the contents of what the chart refers to but does not
// render: Secrets, ConfigMaps the user provides, projected tokens.
type podFixtures struct {
	// configMaps by name, then key. kube-root-ca.crt (the cluster CA every
	// namespace has) defaults to testCACert; any other missing ConfigMap
	// key, to testCACert too (they are all CA bundles) when the volume
	// names its items.
	configMaps map[string]map[string]string
	// secrets by name, then key; a missing Secret with tls.crt/tls.key
	// items is a CA key pair from `credgate ca init`.
	secrets map[string]map[string]string
	// token is the content of every projected service-account token.
	token string
	// agentSocketDir is the directory of a (fake) SPIRE agent's Workload
	// API socket, which the SPIFFE CSI driver's and hostPath volumes show
	// in the pod (as a symlink to it); empty: an empty directory.
	agentSocketDir string
}

// pod is the credgate container's view of the files of a rendered
// Deployment, laid out under root the way kubelet does it: ConfigMap,
// Secret and projected volumes as atomically swapped directories (a
// timestamped directory, a ..data symlink to it, and one symlink per file),
// subPath mounts as plain files.
type pod struct {
	t       *testing.T
	root    string
	objs    []object
	spec    map[string]any // the pod spec
	ctr     map[string]any // the credgate container
	fx      podFixtures
	version atomic.Int64 // numbers the timestamped directories
}

// newPod lays out the container's files for the rendered objects.
func newPod(t *testing.T, objs []object, fx podFixtures) *pod {
	t.Helper()
	d := mustFind(t, objs, "Deployment", fullname)
	spec, _ := get(d, "spec.template.spec").(map[string]any)
	ctr, _ := get(spec, "containers.[name=credgate]").(map[string]any)
	p := &pod{t: t, root: t.TempDir(), objs: objs, spec: spec, ctr: ctr, fx: fx}
	mounts, _ := ctr["volumeMounts"].([]any)
	for _, m := range mounts {
		mm := m.(map[string]any)
		name, _ := mm["name"].(string)
		mountPath, _ := mm["mountPath"].(string)
		vol, _ := get(spec, "volumes.[name="+name+"]").(map[string]any)
		if vol == nil {
			t.Fatalf("volumeMount %s has no volume", name)
		}
		if _, ok := vol["emptyDir"]; ok {
			mkdir(t, p.path(mountPath))
			continue
		}
		if agentSocketVolume(vol) {
			p.mountAgentSocket(mountPath)
			continue
		}
		files := p.volumeFiles(vol)
		if sub, ok := mm["subPath"].(string); ok {
			data, ok := files[sub]
			if !ok {
				t.Fatalf("volumeMount %s: subPath %s is not in the volume", name, sub)
			}
			write(t, p.path(mountPath), data)
			continue
		}
		p.writeAtomic(p.path(mountPath), files)
	}
	return p
}

// agentSocketVolume reports whether vol shows the SPIRE agent's socket
// directory: a SPIFFE CSI driver volume or a hostPath directory.
func agentSocketVolume(vol map[string]any) bool {
	return get(vol, "csi.driver") == "csi.spiffe.io" || get(vol, "hostPath.type") == "Directory"
}

// mountAgentSocket shows fx.agentSocketDir at mountPath, or an empty
// directory when there is none.
func (p *pod) mountAgentSocket(mountPath string) {
	t := p.t
	t.Helper()
	if p.fx.agentSocketDir == "" {
		mkdir(t, p.path(mountPath))
		return
	}
	mkdir(t, filepath.Dir(p.path(mountPath)))
	if err := os.Symlink(p.fx.agentSocketDir, p.path(mountPath)); err != nil {
		t.Fatal(err)
	}
}

// path is where the container's absolute path abs is under root.
func (p *pod) path(abs string) string { return filepath.Join(p.root, filepath.FromSlash(abs)) }

// volumeFiles returns the files (path in the volume → content) a volume
// provides.
func (p *pod) volumeFiles(vol map[string]any) map[string]string {
	t := p.t
	t.Helper()
	files := map[string]string{}
	if cm, ok := vol["configMap"].(map[string]any); ok {
		p.addItems(files, "ConfigMap", cm["name"].(string), cm["items"])
		return files
	}
	if s, ok := vol["secret"].(map[string]any); ok {
		p.addItems(files, "Secret", s["secretName"].(string), s["items"])
		return files
	}
	if pr, ok := vol["projected"].(map[string]any); ok {
		for _, src := range pr["sources"].([]any) {
			src := src.(map[string]any)
			switch {
			case src["serviceAccountToken"] != nil:
				path, _ := get(src, "serviceAccountToken.path").(string)
				files[path] = p.fx.token
			case src["configMap"] != nil:
				cm := src["configMap"].(map[string]any)
				p.addItems(files, "ConfigMap", cm["name"].(string), cm["items"])
			case src["downwardAPI"] != nil:
				for _, it := range get(src, "downwardAPI.items").([]any) {
					it := it.(map[string]any)
					if get(it, "fieldRef.fieldPath") != "metadata.namespace" {
						t.Fatalf("downwardAPI item %v: only metadata.namespace is simulated", it)
					}
					files[it["path"].(string)] = namespace
				}
			default:
				t.Fatalf("projected source %v is not simulated", src)
			}
		}
		return files
	}
	t.Fatalf("volume %v is not simulated", vol)
	return nil
}

// addItems adds a ConfigMap's or Secret's keys to files: the listed items,
// or every key when items is nil.
func (p *pod) addItems(files map[string]string, kind, name string, items any) {
	t := p.t
	t.Helper()
	data := p.objectData(kind, name)
	list, _ := items.([]any)
	if list == nil {
		if data == nil {
			t.Fatalf("%s %s is mounted whole but has no fixture", kind, name)
		}
		for k, v := range data {
			files[k] = v
		}
		return
	}
	for _, it := range list {
		it := it.(map[string]any)
		key, path := it["key"].(string), it["path"].(string)
		v, ok := data[key]
		if !ok {
			v, ok = p.defaultItem(kind, key)
		}
		if !ok {
			t.Fatalf("%s %s has no key %s (rendered or fixture)", kind, name, key)
		}
		files[path] = v
	}
}

// objectData is the data of a ConfigMap the chart rendered, else the
// fixture.
func (p *pod) objectData(kind, name string) map[string]string {
	if kind == "ConfigMap" {
		if o := find(p.objs, "ConfigMap", name); o != nil {
			out := map[string]string{}
			for k, v := range o["data"].(map[string]any) {
				out[k] = v.(string)
			}
			return out
		}
		return p.fx.configMaps[name]
	}
	return p.fx.secrets[name]
}

func (p *pod) defaultItem(kind, key string) (string, bool) {
	switch {
	case kind == "ConfigMap":
		return testCACert, true
	case kind == "Secret" && key == "tls.crt":
		cert, _ := caPair(p.t)
		return cert, true
	case kind == "Secret" && key == "tls.key":
		_, key := caPair(p.t)
		return key, true
	}
	return "", false
}

// writeAtomic writes files into dir like kubelet's atomic writer: into a
// new timestamped directory, then ..data is swapped to it with a rename
// and the user-visible names are symlinks through ..data. Called again on
// the same dir it is an update, as kubelet does when a ConfigMap changes.
func (p *pod) writeAtomic(dir string, files map[string]string) {
	t := p.t
	t.Helper()
	mkdir(t, dir)
	ts := fmt.Sprintf("..2025_01_01_00_00_00.%d", p.version.Add(1))
	for path, data := range files {
		write(t, filepath.Join(dir, ts, path), data)
	}
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	top := map[string]bool{}
	for path := range files {
		top[strings.SplitN(path, "/", 2)[0]] = true
	}
	names := make([]string, 0, len(top))
	for n := range top {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		link := filepath.Join(dir, n)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink(filepath.Join("..data", n), link); err != nil {
			t.Fatal(err)
		}
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
			t.Fatal(err)
		}
	}
}

// updateConfigMap changes a rendered ConfigMap in every volume that mounts
// it (as a directory), the way kubelet propagates a ConfigMap edit.
func (p *pod) updateConfigMap(name string, data map[string]string) {
	t := p.t
	t.Helper()
	o := find(p.objs, "ConfigMap", name)
	if o == nil {
		t.Fatalf("no rendered ConfigMap %s", name)
	}
	m := map[string]any{}
	for k, v := range data {
		m[k] = v
	}
	o["data"] = m
	n := 0
	for _, mnt := range p.ctr["volumeMounts"].([]any) {
		mm := mnt.(map[string]any)
		vol, _ := get(p.spec, "volumes.[name="+mm["name"].(string)+"]").(map[string]any)
		if get(vol, "configMap.name") != name || mm["subPath"] != nil {
			continue
		}
		p.writeAtomic(p.path(mm["mountPath"].(string)), p.volumeFiles(vol))
		n++
	}
	if n == 0 {
		t.Fatalf("ConfigMap %s is not mounted as a directory", name)
	}
}

func mkdir(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}

// write writes data to path, creating its directory.
func write(t *testing.T, path, data string) {
	t.Helper()
	mkdir(t, filepath.Dir(path))
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// env is the container's environment as the pod gets it: each env entry's
// value, or the Secret or ConfigMap key it names (rendered or fixture).
// credgate validate reads the variables the config names, as serve does.
func (p *pod) env() []string {
	t := p.t
	t.Helper()
	var out []string
	list, _ := p.ctr["env"].([]any)
	for _, e := range list {
		m := e.(map[string]any)
		name, _ := m["name"].(string)
		if v, ok := m["value"].(string); ok {
			out = append(out, name+"="+v)
			continue
		}
		for kind, ref := range map[string]string{"Secret": "valueFrom.secretKeyRef", "ConfigMap": "valueFrom.configMapKeyRef"} {
			r, _ := get(m, ref).(map[string]any)
			if r == nil {
				continue
			}
			obj, key := r["name"].(string), r["key"].(string)
			v, ok := p.objectData(kind, obj)[key]
			if !ok {
				t.Fatalf("env %s: %s %s has no key %s (rendered or fixture)", name, kind, obj, key)
			}
			out = append(out, name+"="+v)
		}
	}
	return out
}

// rootConfig rewrites, in the config file at the container's path abs,
// the absolute paths under the container's mounts to where the test laid
// them out (audit.output under /var/log/credgate, say), so that a check
// of their directories sees the pod's.
func (p *pod) rootConfig(abs string) {
	t := p.t
	t.Helper()
	path := p.path(abs)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := string(raw)
	mounts, _ := p.ctr["volumeMounts"].([]any)
	for _, m := range mounts {
		mp, _ := m.(map[string]any)["mountPath"].(string)
		if mp == "" || mp == "/" {
			continue
		}
		// The mount path itself (a file mounted with subPath) or a path
		// under it, after a quote or a space (a value, not a substring).
		re := regexp.MustCompile(`(["\s\[])` + regexp.QuoteMeta(mp) + `(["/,\]\s]|$)`)
		text = re.ReplaceAllString(text, "${1}"+strings.ReplaceAll(p.path(mp), "$", "$$")+"${2}")
	}
	// Unlink first: the config may be a symlink into a read-only layout.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}
