package main

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// The data directory flags reach the in-process node: a short run with a
// small memory limit and the write-ahead log reports spill and WAL figures
// in its JSON, and removes the node's directory.
func TestBenchDataDir(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a load")
	}
	dir := t.TempDir()
	var out, errb bytes.Buffer
	code := run([]string{"bench", "--duration", "2s", "--rate", "3000", "--root-wait", "1s", "--decision-wait", "3s",
		"--memory-limit", "2MiB", "--data-dir", dir, "--durability", "wal", "--no-progress", "--json"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var res struct {
		Engine struct {
			Store *struct {
				Durability string `json:"durability"`
				SpillOut   int64  `json:"spill_out_bytes"`
				WALCommits int64  `json:"wal_commits"`
				WALSyncs   int64  `json:"wal_syncs"`
			} `json:"store"`
		} `json:"engine"`
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("--json output does not parse: %v\n%s", err, out.String())
	}
	st := res.Engine.Store
	if st == nil || st.Durability != "wal" || st.SpillOut <= 0 || st.WALCommits <= 0 || st.WALSyncs <= 0 {
		t.Fatalf("store figures: %+v", st)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Fatalf("left in --data-dir: %v", left)
	}
}

func TestBenchDataDirFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--durability", "wal"}, "--data-dir"},
		{[]string{"--durability", "sync", "--data-dir", "temp"}, "--durability"},
		{[]string{"--data-dir", "temp", "--disk-limit", "1MiB"}, "--disk-limit"},
		{[]string{"--data-dir", "temp", "--target", "127.0.0.1:4317"}, "in-process"},
	} {
		var out, errb bytes.Buffer
		if code := run(append([]string{"bench"}, c.args...), &out, &errb); code != 2 || !strings.Contains(errb.String(), c.want) {
			t.Errorf("%q: exit %d, %s", c.args, code, errb.String())
		}
	}
}
