package policy_test

import (
	"os"
	"strings"
	"testing"

	"github.com/tailsift/tailsift/policy"
)

// block is a fenced code block of a Markdown file.
type block struct {
	info string // what follows the opening ```
	text string
	line int // of the opening fence
}

func fencedBlocks(t *testing.T, md string) []block {
	t.Helper()
	var out []block
	var cur *block
	for i, line := range strings.Split(md, "\n") {
		switch {
		case cur == nil && strings.HasPrefix(line, "```"):
			cur = &block{info: strings.TrimSpace(strings.TrimPrefix(line, "```")), line: i + 1}
		case cur != nil && strings.TrimSpace(line) == "```":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.text += line + "\n"
		}
	}
	if cur != nil {
		t.Fatalf("line %d: unterminated code block", cur.line)
	}
	return out
}

// TestDocsExamples parses every ```yaml block of docs/policies.md: each
// must be a valid policy file, except blocks marked "```yaml invalid",
// which must fail with exactly the messages of the ```text block that
// follows them.
func TestDocsExamples(t *testing.T) {
	md, err := os.ReadFile("../docs/policies.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := fencedBlocks(t, string(md))
	valid, invalid := 0, 0
	for i, b := range blocks {
		switch b.info {
		case "yaml":
			valid++
			if _, err := policy.Parse("policies.yaml", []byte(b.text)); err != nil {
				t.Errorf("docs/policies.md:%d: example does not parse:\n%v", b.line, err)
			}
		case "yaml invalid":
			invalid++
			_, err := policy.Parse("policies.yaml", []byte(b.text))
			if err == nil {
				t.Errorf("docs/policies.md:%d: invalid example parses", b.line)
				continue
			}
			if i+1 >= len(blocks) || blocks[i+1].info != "text" {
				t.Errorf("docs/policies.md:%d: invalid example without a ```text block of its errors after it; they are:\n%v", b.line, err)
				continue
			}
			if want := strings.TrimSpace(blocks[i+1].text); err.Error() != want {
				t.Errorf("docs/policies.md:%d: errors differ from the documented ones:\n got:\n%v\nwant:\n%s", b.line, err, want)
			}
		default:
			if strings.HasPrefix(b.info, "yaml") {
				t.Errorf("docs/policies.md:%d: unknown code block kind %q", b.line, b.info)
			}
		}
	}
	if valid < 15 || invalid < 3 {
		t.Errorf("found %d valid and %d invalid yaml examples: is the fence syntax still ```yaml?", valid, invalid)
	}
}
