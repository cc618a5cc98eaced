package warehouse

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

var day0 = time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)

// Multi-part exports in every format, read through the real AWS SDK from a
// real S3-protocol server, give exactly the counts of a direct computation
// on the same rows. A small memory budget and fan-in force spilled runs and
// a multi-level merge.
func TestS3FormatsMatchDirect(t *testing.T) {
	s := startS3(t)
	s.bucket(t, "usage")
	calls := genCalls(1, 60_000, 400, day0, 3*24*60)
	for _, tc := range []struct {
		name   string
		prefix string
		part   func(i int, p []call) (string, []byte)
		small  bool // a tiny sort budget: spills and merges
	}{
		// gzip CSV parts, each spelling timestamps its own way; names
		// without .gz: gzip is found by its magic bytes.
		{"csv.gz", "csv/", func(i int, p []call) (string, []byte) {
			return fmt.Sprintf("part-%04d.csv", i), gz(csvBytes(p, i))
		}, true},
		// JSON lines, one part compressed, keys in two orders.
		{"jsonl", "jsonl/dt=2026-11-02/", func(i int, p []call) (string, []byte) {
			if i == 0 {
				return fmt.Sprintf("part-%04d.json.gz", i), gz(jsonlBytes(p))
			}
			return fmt.Sprintf("part-%04d.jsonl", i), jsonlBytes(p)
		}, false},
		// Parquet with TIMESTAMP(MILLIS), one part gzip-wrapped.
		{"parquet", "parquet/", func(i int, p []call) (string, []byte) {
			if i == 1 {
				return fmt.Sprintf("part-%04d.parquet.gz", i), gz(parquetBytes(t, p))
			}
			return fmt.Sprintf("part-%04d.parquet", i), parquetBytes(t, p)
		}, true},
		// No extensions at all: formats found by content.
		{"sniffed", "sniffed/", func(i int, p []call) (string, []byte) {
			switch i % 3 {
			case 0:
				return fmt.Sprintf("part-%04d", i), gz(csvBytes(p, i))
			case 1:
				return fmt.Sprintf("part-%04d", i), jsonlBytes(p)
			}
			return fmt.Sprintf("part-%04d", i), parquetBytes(t, p)
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parts := split(calls, 6)
			for i, p := range parts {
				key, data := tc.part(i, p)
				s.put(t, "usage", tc.prefix+key, data)
			}
			s.put(t, "usage", tc.prefix+"_SUCCESS", nil)
			o := Options{From: "s3://usage/" + tc.prefix, EndpointURL: s.URL}
			if tc.small {
				o.MemoryBytes, o.maxFanIn = 1<<16, 3
			}
			res := generate(t, o)
			checkSame(t, res, calls)
			if res.Objects != 6 || res.Rows.Used != int64(len(calls)) {
				t.Errorf("%d objects, %d rows used; want 6, %d", res.Objects, res.Rows.Used, len(calls))
			}
			if tc.small && res.SortRuns < 4 {
				t.Errorf("%d sorted runs: the small budget should have spilled", res.SortRuns)
			}
			t.Logf("%s: %v", tc.name, res.Formats)
		})
	}
}

// More than 1,000 objects under one prefix: the listing takes several pages
// (S3 returns at most 1,000 keys per page) and no part is missed.
func TestS3ListingPagination(t *testing.T) {
	s := startS3(t)
	s.bucket(t, "many")
	calls := genCalls(2, 2_100, 50, day0, 600)
	parts := split(calls, 1_050)
	for i, p := range parts {
		s.put(t, "many", fmt.Sprintf("calls/part-%05d.csv", i), csvBytes(p, 0))
	}
	s.put(t, "many", "other/part-00000.csv", csvBytes(calls[:1], 0)) // outside the prefix
	res := generate(t, Options{From: "s3://many/calls/", EndpointURL: s.URL})
	if res.Objects != 1_050 {
		t.Errorf("read %d objects, want 1050", res.Objects)
	}
	if n := s.lists.Load(); n < 2 {
		t.Errorf("%d listing requests: pagination was not crossed", n)
	}
	checkSame(t, res, calls)
}

// AWS_ENDPOINT_URL is honoured like --endpoint-url.
func TestS3EndpointFromEnv(t *testing.T) {
	s := startS3(t)
	s.bucket(t, "env")
	calls := genCalls(3, 500, 20, day0, 100)
	s.put(t, "env", "x.csv", csvBytes(calls, 1))
	t.Setenv("AWS_ENDPOINT_URL", s.URL)
	checkSame(t, generate(t, Options{From: "s3://env/x.csv"}), calls)
}

// Store errors name the bucket and say what to do.
func TestS3Errors(t *testing.T) {
	s := startS3(t)
	s.bucket(t, "ok")
	s.put(t, "ok", "a.csv", csvBytes(genCalls(4, 10, 2, day0, 5), 0))
	for _, tc := range []struct {
		name  string
		from  string
		setup func(t *testing.T)
		want  []string
	}{
		// A bucket that does not exist.
		{"missing bucket", "s3://nope/prefix/", nil, []string{"s3://nope/prefix/", `bucket "nope" does not exist`, "NoSuchBucket"}},
		// An access key the store does not know.
		{"wrong credentials", "s3://ok/", func(t *testing.T) { t.Setenv("AWS_ACCESS_KEY_ID", "AKIAWRONG") },
			[]string{"s3://ok/", "InvalidAccessKeyId", "check the credentials"}},
		// A prefix with nothing under it.
		{"empty prefix", "s3://ok/nothing/", nil, []string{"s3://ok/nothing/", "empty export", "no parts"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup(t)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_, err := Generate(ctx, Options{From: tc.from, EndpointURL: s.URL, TempDir: t.TempDir()}, nil)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
	_ = os.Getenv
}
