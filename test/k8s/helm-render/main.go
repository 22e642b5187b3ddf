// helm-render renders a Helm v3 chart the way `helm template` does, for
// offline verification where no helm binary exists. It uses the same engine
// Helm uses: Go's text/template with the sprig function library, plus Helm's
// own functions (include, tpl, required, toYaml, fromYaml, toJson, fromJson,
// lookup, ...), Helm's value coalescing, and values.schema.json validation
// with gojsonschema (the validator Helm 3 used until 3.17).
//
// Usage: helm-render --chart DIR [--name R] [--namespace NS] [-f values.yaml]... [--notes]
//
// Differences from `helm template` (documented, deliberate):
//   - a dependency listed in Chart.yaml but absent from charts/ is skipped with
//     a warning on stderr (helm would refuse); its values are passed through.
//   - lookup always returns an empty map (as `helm template` does).
//   - .Files supports Get, GetBytes, Glob (returning names), Lines.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	semver "github.com/Masterminds/semver/v3"
	sprig "github.com/Masterminds/sprig/v3"
	"github.com/xeipuuv/gojsonschema"
	"sigs.k8s.io/yaml"
)

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// ChartMeta mirrors the fields of helm's chart.Metadata that templates use.
type ChartMeta struct {
	APIVersion   string                   `json:"apiVersion"`
	Name         string                   `json:"name"`
	Version      string                   `json:"version"`
	AppVersion   string                   `json:"appVersion"`
	Description  string                   `json:"description"`
	Type         string                   `json:"type"`
	KubeVersion  string                   `json:"kubeVersion"`
	Home         string                   `json:"home"`
	Keywords     []string                 `json:"keywords"`
	Dependencies []map[string]interface{} `json:"dependencies"`
	Annotations  map[string]string        `json:"annotations"`
	IsRoot       bool                     `json:"-"`
}

type Release struct {
	Name      string
	Namespace string
	IsInstall bool
	IsUpgrade bool
	Revision  int
	Service   string
}

type KubeVersion struct {
	Version    string
	Major      string
	Minor      string
	GitVersion string
}

func (k KubeVersion) String() string { return k.Version }

type VersionSet []string

func (v VersionSet) Has(s string) bool {
	for _, x := range v {
		if x == s {
			return true
		}
	}
	return false
}

type Capabilities struct {
	KubeVersion KubeVersion
	APIVersions VersionSet
	HelmVersion map[string]string
}

type Files map[string][]byte

func (f Files) GetBytes(name string) []byte { return f[name] }
func (f Files) Get(name string) string      { return string(f[name]) }
func (f Files) Lines(name string) []string {
	s := string(f[name])
	if s == "" {
		return []string{}
	}
	return strings.Split(strings.TrimRight(s, "\n"), "\n")
}
func (f Files) Glob(pattern string) Files {
	out := Files{}
	for k, v := range f {
		if ok, _ := path.Match(pattern, k); ok {
			out[k] = v
		}
	}
	return out
}

type TemplateInfo struct {
	Name     string
	BasePath string
}

func die(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "Error: "+format+"\n", a...)
	os.Exit(1)
}

func readYAMLMap(file string) map[string]interface{} {
	b, err := os.ReadFile(file)
	if err != nil {
		die("%v", err)
	}
	m := map[string]interface{}{}
	if err := yaml.Unmarshal(b, &m); err != nil {
		die("failed to parse %s: %v", file, err)
	}
	if m == nil {
		m = map[string]interface{}{}
	}
	return m
}

// coalesce merges src (user values) over dst (chart defaults) like helm's
// CoalesceValues: maps merge recursively, a null in src deletes the key.
func coalesce(dst, src map[string]interface{}) map[string]interface{} {
	out := map[string]interface{}{}
	for k, v := range dst {
		out[k] = v
	}
	for k, v := range src {
		if v == nil {
			delete(out, k)
			continue
		}
		sm, sok := v.(map[string]interface{})
		dm, dok := out[k].(map[string]interface{})
		if sok && dok {
			out[k] = coalesce(dm, sm)
		} else {
			out[k] = v
		}
	}
	return out
}

func toYAML(v interface{}) string {
	b, err := yaml.Marshal(v)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(b), "\n")
}

func fromYAML(s string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := yaml.Unmarshal([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func fromYAMLArray(s string) []interface{} {
	a := []interface{}{}
	if err := yaml.Unmarshal([]byte(s), &a); err != nil {
		a = []interface{}{err.Error()}
	}
	return a
}

func toJSON(v interface{}) string {
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(b)
}

func fromJSON(s string) map[string]interface{} {
	m := map[string]interface{}{}
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func fromJSONArray(s string) []interface{} {
	a := []interface{}{}
	if err := json.Unmarshal([]byte(s), &a); err != nil {
		a = []interface{}{err.Error()}
	}
	return a
}

const recursionMaxNums = 1000

func main() {
	var valueFiles multiFlag
	chartDir := flag.String("chart", "", "chart directory")
	name := flag.String("name", "release-name", "release name")
	ns := flag.String("namespace", "default", "release namespace")
	kube := flag.String("kube-version", "v1.32.0", "Kubernetes version for .Capabilities")
	apis := flag.String("api-versions", "", "comma-separated extra API versions for .Capabilities.APIVersions")
	notes := flag.Bool("notes", false, "also render NOTES.txt (after a '# NOTES' marker)")
	upgrade := flag.Bool("upgrade", false, "render as an upgrade instead of an install")
	flag.Var(&valueFiles, "f", "values file (repeatable)")
	flag.Parse()
	if *chartDir == "" {
		die("--chart is required")
	}

	meta := ChartMeta{}
	cb, err := os.ReadFile(filepath.Join(*chartDir, "Chart.yaml"))
	if err != nil {
		die("%v", err)
	}
	if err := yaml.Unmarshal(cb, &meta); err != nil {
		die("Chart.yaml: %v", err)
	}
	if meta.APIVersion != "v2" {
		die("Chart.yaml: apiVersion must be v2 for Helm 3 charts, got %q", meta.APIVersion)
	}
	if meta.Name == "" || meta.Version == "" {
		die("Chart.yaml: name and version are required")
	}
	if _, err := semver.StrictNewVersion(meta.Version); err != nil {
		die("Chart.yaml: version %q is not a valid SemVer 2 version: %v", meta.Version, err)
	}
	meta.IsRoot = true

	values := map[string]interface{}{}
	if _, err := os.Stat(filepath.Join(*chartDir, "values.yaml")); err == nil {
		values = readYAMLMap(filepath.Join(*chartDir, "values.yaml"))
	}
	for _, f := range valueFiles {
		values = coalesce(values, readYAMLMap(f))
	}

	// Dependencies: this renderer renders the parent chart only.
	for _, d := range meta.Dependencies {
		dn, _ := d["name"].(string)
		if _, err := os.Stat(filepath.Join(*chartDir, "charts", dn)); err != nil {
			matches, _ := filepath.Glob(filepath.Join(*chartDir, "charts", dn+"-*.tgz"))
			if len(matches) == 0 {
				fmt.Fprintf(os.Stderr, "WARNING: dependency %q is not in charts/ (run `helm dependency build`); rendering the parent chart only\n", dn)
			} else {
				fmt.Fprintf(os.Stderr, "WARNING: dependency %q is vendored as a tarball; this renderer renders the parent chart only\n", dn)
			}
		}
	}

	// values.schema.json validation, as helm install/template does.
	if sb, err := os.ReadFile(filepath.Join(*chartDir, "values.schema.json")); err == nil {
		vj, _ := json.Marshal(values)
		res, err := gojsonschema.Validate(gojsonschema.NewBytesLoader(sb), gojsonschema.NewBytesLoader(vj))
		if err != nil {
			die("values.schema.json: %v", err)
		}
		if !res.Valid() {
			var sb strings.Builder
			sb.WriteString("values don't meet the specifications of the schema(s) in the following chart(s):\n")
			sb.WriteString(meta.Name + ":\n")
			for _, e := range res.Errors() {
				sb.WriteString("- " + e.String() + "\n")
			}
			die("%s", sb.String())
		}
	}

	// Collect files.
	files := Files{}
	templates := map[string]string{}
	err = filepath.Walk(*chartDir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(*chartDir, p)
		rel = filepath.ToSlash(rel)
		if info.IsDir() {
			if rel == "charts" {
				return filepath.SkipDir
			}
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if strings.HasPrefix(rel, "templates/") {
			templates[meta.Name+"/"+rel] = string(b)
		} else {
			files[rel] = b
		}
		return nil
	})
	if err != nil {
		die("%v", err)
	}

	kv := strings.TrimPrefix(*kube, "v")
	parts := strings.SplitN(kv, ".", 3)
	if len(parts) < 2 {
		die("bad --kube-version")
	}
	apiVersions := VersionSet{"v1", "apps/v1", "batch/v1", "policy/v1", "autoscaling/v1", "autoscaling/v2",
		"networking.k8s.io/v1", "rbac.authorization.k8s.io/v1", "apiextensions.k8s.io/v1"}
	if *apis != "" {
		apiVersions = append(apiVersions, strings.Split(*apis, ",")...)
	}
	caps := Capabilities{
		KubeVersion: KubeVersion{Version: "v" + kv, Major: parts[0], Minor: parts[1], GitVersion: "v" + kv},
		APIVersions: apiVersions,
		HelmVersion: map[string]string{"version": "v3.17.0"},
	}
	// Like helm: the chart's kubeVersion constraint must admit the target cluster.
	if meta.KubeVersion != "" {
		c, err := semver.NewConstraint(meta.KubeVersion)
		if err != nil {
			die("Chart.yaml: kubeVersion %q: %v", meta.KubeVersion, err)
		}
		v, err := semver.NewVersion(caps.KubeVersion.Version)
		if err != nil || !c.Check(v) {
			die("chart requires kubeVersion: %s which is incompatible with Kubernetes %s", meta.KubeVersion, caps.KubeVersion.Version)
		}
	}
	rel := Release{Name: *name, Namespace: *ns, IsInstall: !*upgrade, IsUpgrade: *upgrade, Revision: 1, Service: "Helm"}
	if *upgrade {
		rel.Revision = 2
	}

	// Build the template set the way helm's engine does.
	t := template.New("gotpl")
	t.Option("missingkey=zero")
	includedNames := map[string]int{}
	funcs := sprig.TxtFuncMap()
	delete(funcs, "env")
	delete(funcs, "expandenv")
	extra := template.FuncMap{
		"toYaml":        toYAML,
		"fromYaml":      fromYAML,
		"fromYamlArray": fromYAMLArray,
		"toJson":        toJSON,
		"fromJson":      fromJSON,
		"fromJsonArray": fromJSONArray,
		"toToml":        func(v interface{}) string { return "" },
		"required": func(warn string, val interface{}) (interface{}, error) {
			if val == nil {
				return val, errors.New(warn)
			} else if s, ok := val.(string); ok && s == "" {
				return val, errors.New(warn)
			}
			return val, nil
		},
		"lookup": func(apiversion, resource, namespace, name string) (map[string]interface{}, error) {
			return map[string]interface{}{}, nil
		},
		"include": func(string, interface{}) (string, error) { return "", errors.New("not initialised") },
		"tpl":     func(string, interface{}) (string, error) { return "", errors.New("not initialised") },
	}
	for k, v := range extra {
		funcs[k] = v
	}
	funcs["include"] = func(name string, data interface{}) (string, error) {
		var buf strings.Builder
		if v, ok := includedNames[name]; ok {
			if v > recursionMaxNums {
				return "", fmt.Errorf("rendering template has a nested reference name: %s", name)
			}
			includedNames[name]++
		} else {
			includedNames[name] = 1
		}
		err := t.ExecuteTemplate(&buf, name, data)
		includedNames[name]--
		return buf.String(), err
	}
	funcs["tpl"] = func(tplStr string, vals interface{}) (string, error) {
		clone, err := t.Clone()
		if err != nil {
			return "", err
		}
		nt, err := clone.New("tpl").Parse(tplStr)
		if err != nil {
			return "", fmt.Errorf("cannot parse template %q: %v", tplStr, err)
		}
		var buf strings.Builder
		if err := nt.Execute(&buf, vals); err != nil {
			return "", fmt.Errorf("error during tpl function execution for %q: %v", tplStr, err)
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
	t.Funcs(funcs)

	names := make([]string, 0, len(templates))
	for n := range templates {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if _, err := t.New(n).Parse(templates[n]); err != nil {
			die("parse error in %s", err)
		}
	}

	top := map[string]interface{}{
		"Values":       values,
		"Release":      rel,
		"Chart":        meta,
		"Capabilities": caps,
		"Files":        files,
	}
	var out bytes.Buffer
	var notesOut string
	for _, n := range names {
		base := path.Base(n)
		if strings.HasPrefix(base, "_") {
			continue
		}
		isNotes := strings.HasSuffix(n, "/templates/NOTES.txt")
		if isNotes && !*notes {
			continue
		}
		vals := map[string]interface{}{}
		for k, v := range top {
			vals[k] = v
		}
		vals["Template"] = TemplateInfo{Name: n, BasePath: meta.Name + "/templates"}
		var buf strings.Builder
		if err := t.ExecuteTemplate(&buf, n, vals); err != nil {
			die("%v", err)
		}
		s := strings.ReplaceAll(buf.String(), "<no value>", "")
		if isNotes {
			notesOut = s
			continue
		}
		if !strings.HasSuffix(n, ".yaml") && !strings.HasSuffix(n, ".yml") && !strings.HasSuffix(n, ".tpl") {
			continue
		}
		if strings.TrimSpace(s) == "" {
			continue
		}
		// Split like helm's releaseutil.SplitManifests and print with # Source comments.
		for _, doc := range strings.Split("\n"+s, "\n---") {
			if strings.TrimSpace(doc) == "" {
				continue
			}
			fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", n, strings.Trim(doc, "\n"))
		}
	}
	os.Stdout.Write(out.Bytes())
	if *notes {
		fmt.Fprintf(os.Stdout, "# NOTES\n%s", notesOut)
	}
}
