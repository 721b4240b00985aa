// Package tailsift exposes files at the repository root that the binary
// embeds, such as the example policy file; the engine itself lives in the
// subpackages.
package tailsift
