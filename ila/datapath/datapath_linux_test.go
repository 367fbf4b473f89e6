package datapath

import (
	"testing"

	"github.com/ilamesh/ilamesh/internal/testutil"
)

func TestOpenClose(t *testing.T) {
	testutil.Privileged(t)
	d, err := Open(Config{MaxMappings: 1024})
	if err != nil {
		t.Fatalf("%+v", err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
}
