package bytesize

import "testing"

func TestParse(t *testing.T) {
	good := map[string]Size{
		"0": 0, "1024": 1024, "16MiB": 16 << 20, "2GiB": 2 << 30, "1.5KiB": 1536,
		"500KB": 500e3, "3 MB": 3e6, "7B": 7, " 1TiB ": 1 << 40,
	}
	for in, want := range good {
		got, err := Parse(in)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1MiB", "12XB", "1e400", "NaN", "16 mib"} {
		if _, err := Parse(in); err == nil {
			t.Errorf("Parse(%q) succeeded, want error", in)
		}
	}
}

func TestStringRoundTrips(t *testing.T) {
	for _, s := range []Size{0, 1, 1023, 1024, 16 << 20, 3 << 30, 5 << 40, 1536} {
		back, err := Parse(s.String())
		if err != nil || back != s {
			t.Errorf("%d -> %q -> %d, %v", s, s.String(), back, err)
		}
	}
	if got := Size(16 << 20).String(); got != "16MiB" {
		t.Errorf("String() = %q, want 16MiB", got)
	}
}
