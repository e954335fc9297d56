package syncml

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the encoder golden files in testdata/golden")

// TestEncoderGolden pins the encoders' exact output for every vector: compact XML, indented
// XML (what dmctl prints), WBXML 1.2 with the numeric public id and WBXML with the FPI in the
// string table. Run `go test ./pkg/syncml -run Golden -update` after an intended change and
// review the diff.
func TestEncoderGolden(t *testing.T) {
	dir, names := messageVectors(t)
	for _, name := range names {
		m, err := DecodeXML(readFile(t, filepath.Join(dir, name+".xml")), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		outputs := map[string]func() ([]byte, error){
			".xml":        func() ([]byte, error) { return AppendXML(nil, m, XMLOptions{}) },
			".pretty.xml": func() ([]byte, error) { return AppendXML(nil, m, XMLOptions{Indent: "  "}) },
			".wbxml":      func() ([]byte, error) { return AppendWBXML(nil, m, WBXMLOptions{}) },
			".fpi.wbxml":  func() ([]byte, error) { return AppendWBXML(nil, m, WBXMLOptions{FPIInStringTable: true}) },
		}
		for ext, enc := range outputs {
			got, err := enc()
			if err != nil {
				t.Fatalf("%s%s: %v", name, ext, err)
			}
			path := filepath.Join("testdata", "golden", name+ext)
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s: encoder output differs from the golden file (run with -update if intended)", path)
			}
		}
	}
}
