package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"slices"
	"sort"
	"strings"
)

// renderAPIDocs returns the OpenAPI document as served at /openapi.json and
// the HTML page served at /docs, both rendered once at start.
func renderAPIDocs(doc map[string]any) (docJSON, page []byte, err error) {
	docJSON, err = json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, nil, fmt.Errorf("encode document: %w", err)
	}
	var spec apiSpec
	if err := json.Unmarshal(docJSON, &spec); err != nil {
		return nil, nil, fmt.Errorf("read back document: %w", err)
	}
	var buf bytes.Buffer
	if err := docsTemplate.Execute(&buf, spec.page()); err != nil {
		return nil, nil, fmt.Errorf("render docs: %w", err)
	}
	return docJSON, buf.Bytes(), nil
}

// apiSpec is the part of a Swagger 2.0 document the docs page shows.
type apiSpec struct {
	Info struct {
		Title       string `json:"title"`
		Version     string `json:"version"`
		Description string `json:"description"`
	} `json:"info"`
	Tags []struct {
		Name        string `json:"name"`
		Description string `json:"description"`
	} `json:"tags"`
	Paths       map[string]map[string]json.RawMessage `json:"paths"`
	Definitions map[string]apiSchema                  `json:"definitions"`
}

type apiOperation struct {
	Summary     string                 `json:"summary"`
	Description string                 `json:"description"`
	OperationID string                 `json:"operationId"`
	Parameters  []apiParameter         `json:"parameters"`
	Responses   map[string]apiResponse `json:"responses"`
	Tags        []string               `json:"tags"`
	Access      string                 `json:"x-mercato-access"`
}

type apiParameter struct {
	Name        string     `json:"name"`
	In          string     `json:"in"`
	Description string     `json:"description"`
	Required    bool       `json:"required"`
	Type        string     `json:"type"`
	Format      string     `json:"format"`
	Items       *apiSchema `json:"items"`
	Schema      *apiSchema `json:"schema"`
}

type apiResponse struct {
	Description string     `json:"description"`
	Schema      *apiSchema `json:"schema"`
}

type apiSchema struct {
	Ref         string          `json:"$ref"`
	Type        string          `json:"type"`
	Format      string          `json:"format"`
	Description string          `json:"description"`
	Items       *apiSchema      `json:"items"`
	Properties  orderedSchemas  `json:"properties"`
	Enum        json.RawMessage `json:"enum"`
}

// orderedSchemas keeps object properties in document order, which is the
// order of the proto fields.
type orderedSchemas []namedSchema

type namedSchema struct {
	Name   string
	Schema apiSchema
}

func (o *orderedSchemas) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return fmt.Errorf("properties: want an object")
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return fmt.Errorf("properties: %w", err)
		}
		name, _ := tok.(string)
		var s apiSchema
		if err := dec.Decode(&s); err != nil {
			return fmt.Errorf("property %s: %w", name, err)
		}
		*o = append(*o, namedSchema{Name: name, Schema: s})
	}
	return nil
}

// The docs page's view of the document.
type (
	docsPage struct {
		Title, Version, Description string
		Groups                      []docsGroup
		Schemas                     []docsSchema
	}
	docsGroup struct {
		Name, Description string
		Operations        []docsOperation
	}
	docsOperation struct {
		Method, Path, Summary, Description, Access, Anchor string
		Parameters                                         []docsField
		Body                                               *typeRef
		Responses                                          []docsResponse
	}
	docsResponse struct {
		Code, Description string
		Schema            *typeRef
	}
	docsSchema struct {
		Name, Anchor, Description string
		Fields                    []docsField
	}
	docsField struct {
		Name, In, Description string
		Required              bool
		Type                  typeRef
	}
	// typeRef is a type as shown: "array of " + a linked definition, say.
	typeRef struct {
		Prefix, Name, Anchor string
	}
)

func (s apiSpec) page() docsPage {
	p := docsPage{Title: s.Info.Title, Version: s.Info.Version, Description: s.Info.Description}
	groups := map[string]*docsGroup{}
	var order []string
	group := func(name string) *docsGroup {
		if g, ok := groups[name]; ok {
			return g
		}
		groups[name] = &docsGroup{Name: name}
		order = append(order, name)
		return groups[name]
	}
	for _, t := range s.Tags {
		group(t.Name).Description = t.Description
	}

	paths := make([]string, 0, len(s.Paths))
	for path := range s.Paths {
		paths = append(paths, path)
	}
	sort.Strings(paths)
	for _, path := range paths {
		for _, method := range httpMethods {
			raw, ok := s.Paths[path][method]
			if !ok {
				continue
			}
			var op apiOperation
			if json.Unmarshal(raw, &op) != nil {
				continue
			}
			tag := "Other"
			if len(op.Tags) > 0 {
				tag = op.Tags[0]
			}
			g := group(tag)
			g.Operations = append(g.Operations, op.view(strings.ToUpper(method), path))
		}
	}
	for _, name := range order {
		if g := groups[name]; len(g.Operations) > 0 {
			p.Groups = append(p.Groups, *g)
		}
	}

	names := make([]string, 0, len(s.Definitions))
	for name := range s.Definitions {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		def := s.Definitions[name]
		ds := docsSchema{Name: name, Anchor: schemaAnchor(name), Description: def.Description}
		for _, prop := range def.Properties {
			ds.Fields = append(ds.Fields, docsField{Name: prop.Name, Description: prop.Schema.Description, Type: prop.Schema.ref()})
		}
		p.Schemas = append(p.Schemas, ds)
	}
	return p
}

func (op apiOperation) view(method, path string) docsOperation {
	v := docsOperation{
		Method: method, Path: path, Summary: op.Summary, Description: op.Description,
		Access: op.Access, Anchor: "op-" + op.OperationID,
	}
	if v.Access == "" {
		v.Access = Anyone.String()
	}
	for _, prm := range op.Parameters {
		if prm.In == "body" && prm.Schema != nil {
			ref := prm.Schema.ref()
			v.Body = &ref
			continue
		}
		t := apiSchema{Type: prm.Type, Format: prm.Format, Items: prm.Items}
		v.Parameters = append(v.Parameters, docsField{
			Name: prm.Name, In: prm.In, Description: prm.Description, Required: prm.Required, Type: t.ref(),
		})
	}
	codes := make([]string, 0, len(op.Responses))
	for code := range op.Responses {
		codes = append(codes, code)
	}
	// Numeric codes in order, "default" last.
	slices.SortFunc(codes, func(a, b string) int {
		if (a == "default") != (b == "default") {
			if a == "default" {
				return 1
			}
			return -1
		}
		return strings.Compare(a, b)
	})
	for _, code := range codes {
		resp := op.Responses[code]
		r := docsResponse{Code: code, Description: resp.Description}
		if resp.Schema != nil {
			ref := resp.Schema.ref()
			r.Schema = &ref
		}
		v.Responses = append(v.Responses, r)
	}
	return v
}

// ref names the schema's type, linking to a definition when it is one.
func (s apiSchema) ref() typeRef {
	switch {
	case s.Ref != "":
		name := strings.TrimPrefix(s.Ref, "#/definitions/")
		return typeRef{Name: name, Anchor: schemaAnchor(name)}
	case s.Type == "array" && s.Items != nil:
		inner := s.Items.ref()
		inner.Prefix = "array of " + inner.Prefix
		return inner
	case s.Type == "":
		return typeRef{Name: "object"}
	case s.Format != "":
		return typeRef{Name: s.Type + " (" + s.Format + ")"}
	default:
		return typeRef{Name: s.Type}
	}
}

func schemaAnchor(name string) string { return "schema-" + name }

var docsTemplate = template.Must(template.New("docs").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;background:#fafbfc}
main{max-width:960px;margin:0 auto;padding:24px}
h1{margin:0 0 4px}h2{margin-top:40px;border-bottom:2px solid #e3e6ea;padding-bottom:4px}
.lead{color:#4a5260}
nav ul{columns:2;padding-left:18px}
.op{background:#fff;border:1px solid #e3e6ea;border-radius:6px;padding:12px 16px;margin:14px 0}
.op h3{margin:0;font:600 15px ui-monospace,SFMono-Regular,Menlo,monospace}
.m{display:inline-block;min-width:64px;text-align:center;border-radius:4px;color:#fff;padding:1px 6px;margin-right:8px;font-size:13px}
.GET{background:#2f7bd8}.POST{background:#2e9d5b}.PUT{background:#c5862b}.PATCH{background:#8a5cc2}.DELETE{background:#c94141}
.access{float:right;font-size:12px;border-radius:10px;padding:1px 8px;background:#eef0f3}
.access.admin{background:#fde2e2}.access.user{background:#fff4d6}
.summary{white-space:pre-line;margin:8px 0}
table{border-collapse:collapse;width:100%;margin:6px 0;font-size:14px}
th,td{text-align:left;border-bottom:1px solid #eef0f3;padding:4px 8px;vertical-align:top}
th{color:#4a5260;font-weight:600}
code,.t{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:13px}
.req{color:#c94141}
a{color:#2f6fb8}
</style>
</head>
<body><main>
<h1>{{.Title}} <small>{{.Version}}</small></h1>
<p class="lead">{{.Description}}</p>
<p>The machine-readable document is at <a href="/openapi.json">/openapi.json</a>. Routes marked <b>user</b> or <b>admin</b> need an access token: <code>Authorization: Bearer &lt;token&gt;</code>.</p>
<nav><ul>{{range .Groups}}<li><a href="#tag-{{.Name}}">{{.Name}}</a></li>{{end}}<li><a href="#schemas">Schemas</a></li></ul></nav>
{{range .Groups}}
<h2 id="tag-{{.Name}}">{{.Name}}</h2>
{{if .Description}}<p class="summary">{{.Description}}</p>{{end}}
{{range .Operations}}
<section class="op" id="{{.Anchor}}">
<span class="access {{.Access}}">{{.Access}}</span>
<h3><span class="m {{.Method}}">{{.Method}}</span>{{.Path}}</h3>
{{if .Summary}}<p class="summary">{{.Summary}}</p>{{end}}
{{if .Description}}<p class="summary">{{.Description}}</p>{{end}}
{{if .Parameters}}<table><tr><th>parameter</th><th>in</th><th>type</th><th>description</th></tr>
{{range .Parameters}}<tr><td><code>{{.Name}}</code>{{if .Required}} <span class="req">required</span>{{end}}</td><td>{{.In}}</td><td class="t">{{template "type" .Type}}</td><td class="summary">{{.Description}}</td></tr>{{end}}
</table>{{end}}
{{with .Body}}<p>Request body: <span class="t">{{template "type" .}}</span></p>{{end}}
<table><tr><th>status</th><th>response</th><th>body</th></tr>
{{range .Responses}}<tr><td>{{.Code}}</td><td>{{.Description}}</td><td class="t">{{with .Schema}}{{template "type" .}}{{end}}</td></tr>{{end}}
</table>
</section>
{{end}}
{{end}}
<h2 id="schemas">Schemas</h2>
{{range .Schemas}}
<section class="op" id="{{.Anchor}}">
<h3>{{.Name}}</h3>
{{if .Description}}<p class="summary">{{.Description}}</p>{{end}}
{{if .Fields}}<table><tr><th>field</th><th>type</th><th>description</th></tr>
{{range .Fields}}<tr><td><code>{{.Name}}</code></td><td class="t">{{template "type" .Type}}</td><td class="summary">{{.Description}}</td></tr>{{end}}
</table>{{end}}
</section>
{{end}}
</main></body>
</html>
{{define "type"}}{{.Prefix}}{{if .Anchor}}<a href="#{{.Anchor}}">{{.Name}}</a>{{else}}{{.Name}}{{end}}{{end}}
`))
