package tailsift

import _ "embed"

// ExamplePolicies is policies.example.yaml: the documented starting point
// for a policy file (printed by the CLI, and a test case of package policy).
//
//go:embed policies.example.yaml
var ExamplePolicies []byte
