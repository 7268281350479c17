package rules

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/dwellhq/dwell/operators"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// Policy says what happens to events of types the registry does not list.
type Policy uint8

const (
	// PolicyFlag processes them and marks them unregistered in the event log (the default).
	PolicyFlag Policy = iota
	// PolicyAccept processes them like registered types.
	PolicyAccept
	// PolicyReject dead-letters them (ReasonUnregistered).
	PolicyReject
)

var policyNames = [...]string{"flag", "accept", "reject"}

func (p Policy) String() string { return policyNames[p] }

// Dead-letter reasons of the registry (alongside operators' decoding reasons).
const (
	ReasonUnregistered    operators.Reason = "unregistered-type"
	ReasonSchemaViolation operators.Reason = "schema-violation"
)

// Registry is a loaded event registry: what dwell knows about each input event type. Like a
// Config it is immutable once loaded.
type Registry struct {
	Version      string
	Unregistered Policy
	types        map[string]*TypeInfo
	list         []*TypeInfo // sorted by type
}

// TypeInfo describes one registered event type.
type TypeInfo struct {
	Type        string
	Description string
	// Queue is the queue its derived outputs and routes go to ("" the default queue): for
	// every event of the type that rules see, input, system or scheduled.
	Queue string
	// Enabled false: events of this type are ignored (no rules; logged ignored).
	Enabled bool
	// Ephemeral: processed but never written to the events output.
	Ephemeral bool
	// Schema validates `properties`; nil means anything goes. SchemaJSON is its source.
	Schema     *jsonschema.Schema
	SchemaJSON []byte
	Line       int // where it is defined in the registry file
}

// LoadRegistry parses and compiles a registry file:
//
//	version: "1"
//	unregistered: flag            # accept | flag | reject
//	types:
//	  purchase:
//	    description: an order was paid
//	    queue: orders
//	    enabled: true
//	    ephemeral: false
//	    schema: {type: object, required: [total], properties: {total: {type: number}}}
//
// System-event types (visit-ended, ...) may be registered with a description and a queue only.
// Errors are *LoadError with the type in Type. A rules file may hold its registry under a
// `registry` key instead (see Load), so that both are one version. Schemas cannot reference anything outside the
// file ($ref to a URL fails).
func LoadRegistry(data []byte) (*Registry, error) {
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &LoadError{Msg: "empty registry", Registry: true}
		}
		err = yamlError(err)
		var le *LoadError
		if errors.As(err, &le) {
			le.Registry = true
		}
		return nil, err
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	reg, err := loadRegistryNode(root, "unversioned")
	var le *LoadError
	if errors.As(err, &le) {
		le.Registry = true // a registry file's error says registry:, not rules:
	}
	return reg, err
}

// loadRegistryNode loads a registry from its mapping: a file's root, or a rules file's
// `registry` key.
func loadRegistryNode(root *yaml.Node, version string) (*Registry, error) {
	reg := &Registry{Version: version, types: map[string]*TypeInfo{}}
	err := eachKey(root, "", func(k string, kn, v *yaml.Node) error {
		switch k {
		case "version":
			if v.Kind != yaml.ScalarNode || v.Value == "" {
				return errAt(v, "", "version must be a non-empty string")
			}
			reg.Version = v.Value
		case "unregistered":
			i := slices.Index(policyNames[:], v.Value)
			if i < 0 || v.Kind != yaml.ScalarNode {
				return errAt(v, "", "unregistered must be accept, flag or reject")
			}
			reg.Unregistered = Policy(i)
		case "types":
			return eachKey(v, "", func(name string, tn, tv *yaml.Node) error {
				t, err := loadType(name, tn, tv)
				if err != nil {
					return err
				}
				if reg.types[t.Type] != nil {
					return errType(tn, t.Type, "type registered twice (types are normalised: lower case, spaces to '-')")
				}
				reg.types[t.Type] = t
				reg.list = append(reg.list, t)
				return nil
			})
		default:
			return errAt(kn, "", "unknown key %q", k)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(reg.list, func(a, b *TypeInfo) int { return strings.Compare(a.Type, b.Type) })
	return reg, nil
}

func errType(n *yaml.Node, typ, format string, args ...any) error {
	msg := strings.ReplaceAll(fmt.Sprintf(format, args...), "\n", "; ")
	return &LoadError{Type: typ, Line: n.Line, Column: n.Column, Msg: msg}
}

type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("schemas cannot load %s: only the registry's own schemas are available", url)
}

func loadType(name string, kn, v *yaml.Node) (*TypeInfo, error) {
	t := &TypeInfo{Type: normType(name), Enabled: true, Line: kn.Line}
	if t.Type == "" {
		return nil, errType(kn, name, "empty type name")
	}
	_, system := operators.ParseSystemType(t.Type)
	if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
		return t, nil // `purchase:` alone registers the type with defaults
	}
	err := eachKey(v, t.Type, func(k string, fkn, fv *yaml.Node) error {
		if system && k != "description" && k != "queue" {
			// dwell emits them: nothing to admit, validate or drop.
			return errType(fkn, t.Type, "a system-event type takes only description and queue, not %q", k)
		}
		switch k {
		case "description":
			t.Description = fv.Value
		case "queue":
			t.Queue = fv.Value
		case "priority":
			return errType(fkn, t.Type, "priority is no longer part of the registry: it never changed delivery; "+
				"give the type a queue of its own and run a deliverer for it (dwell deliver --queue)")
		case "enabled", "ephemeral":
			if fv.Value != "true" && fv.Value != "false" {
				return errType(fv, t.Type, "%s must be true or false", k)
			}
			if k == "enabled" {
				t.Enabled = fv.Value == "true"
			} else {
				t.Ephemeral = fv.Value == "true"
			}
		case "schema":
			var doc any
			if err := fv.Decode(&doc); err != nil {
				return errType(fv, t.Type, "schema: %v", err)
			}
			js, err := json.Marshal(doc)
			if err != nil {
				return errType(fv, t.Type, "schema: %v", err)
			}
			inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(js))
			if err != nil {
				return errType(fv, t.Type, "schema: %v", err)
			}
			c := jsonschema.NewCompiler()
			c.UseLoader(noLoader{})
			url := "urn:dwell:registry:" + t.Type
			if err := c.AddResource(url, inst); err != nil {
				return errType(fv, t.Type, "schema: %v", err)
			}
			sch, err := c.Compile(url)
			if err != nil {
				return errType(fv, t.Type, "schema: %v", err)
			}
			t.Schema, t.SchemaJSON = sch, js
		default:
			return errType(fkn, t.Type, "unknown key %q", k)
		}
		return nil
	})
	return t, err
}

// Types lists the registered types, sorted by name.
func (r *Registry) Types() []*TypeInfo { return r.list }

// Lookup returns the registration of an event type.
func (r *Registry) Lookup(typ string) (*TypeInfo, bool) {
	t, ok := r.types[typ]
	return t, ok
}

// Verdict is the registry's decision on one event.
type Verdict struct {
	Info *TypeInfo // nil for unregistered types
	// Unregistered: the type is not registered and the policy is flag or reject.
	Unregistered bool
	// Ignore: the type is disabled. Reject: dead-letter with Reason and Detail.
	Ignore, Reject bool
	Reason         operators.Reason
	Detail         string
}

// Check decides what happens to an input event of type typ with the given raw properties.
// Only a type with a schema decodes its properties.
func (r *Registry) Check(typ string, props []byte) Verdict {
	t, ok := r.types[typ]
	if !ok {
		v := Verdict{Unregistered: r.Unregistered != PolicyAccept}
		if r.Unregistered == PolicyReject {
			v.Reject, v.Reason, v.Detail = true, ReasonUnregistered, "event type "+strconv.Quote(typ)+" is not registered"
		}
		return v
	}
	v := Verdict{Info: t}
	if !t.Enabled {
		v.Ignore = true
		return v
	}
	if t.Schema != nil {
		if detail, ok := validate(t.Schema, props); !ok {
			v.Reject, v.Reason, v.Detail = true, ReasonSchemaViolation, detail
		}
	}
	return v
}

// validate checks props (a JSON object, or nil for none: validated as {}) against sch; detail
// names the first failing JSON path (a JSON pointer into properties) and why.
func validate(sch *jsonschema.Schema, props []byte) (detail string, ok bool) {
	if len(props) == 0 {
		props = []byte("{}")
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(props))
	if err != nil {
		return "properties: " + err.Error(), false
	}
	err = sch.Validate(inst)
	if err == nil {
		return "", true
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return err.Error(), false
	}
	leaf := ve
	for len(leaf.Causes) > 0 {
		leaf = leaf.Causes[0]
	}
	p := message.NewPrinter(language.English)
	return "properties" + jsonPointer(leaf.InstanceLocation) + ": " + leaf.ErrorKind.LocalizedString(p), false
}

func jsonPointer(tokens []string) string {
	if len(tokens) == 0 {
		return ""
	}
	var b strings.Builder
	for _, t := range tokens {
		b.WriteByte('/')
		b.WriteString(strings.NewReplacer("~", "~0", "/", "~1").Replace(t))
	}
	return b.String()
}
