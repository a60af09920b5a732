// Package gen holds code generated from api/proto by `make generate`; only this
// file is written by hand, to embed the generated OpenAPI documents.
package gen

import "embed"

// OpenAPI holds one OpenAPI (Swagger 2.0) document per service API,
// at <service>/v1/<service>.swagger.json.
//
//go:embed */v1/*.swagger.json
var OpenAPI embed.FS
