package ila

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestMoveMode(t *testing.T) {
	// The codes are the registration protocol's wire values, the names
	// mapsrv's API and etcd strings: neither may change.
	tests := []struct {
		m    MoveMode
		code uint8
		name string
	}{
		{MoveNone, 0, "none"}, {MoveHot, 1, "hot"}, {MoveWarm, 2, "warm"}, {MoveCold, 3, "cold"},
	}
	for _, tc := range tests {
		if uint8(tc.m) != tc.code || tc.m.String() != tc.name || !tc.m.Valid() {
			t.Errorf("%d: code %d, name %q, valid %v; want %d, %q, true", tc.m, uint8(tc.m), tc.m, tc.m.Valid(), tc.code, tc.name)
		}
		got, err := ParseMoveMode(tc.name)
		if err != nil || got != tc.m {
			t.Errorf("ParseMoveMode(%q) = %v, %v", tc.name, got, err)
		}
	}
	if m, err := ParseMoveMode(""); err != nil || m != MoveNone {
		t.Errorf(`ParseMoveMode("") = %v, %v; want none`, m, err)
	}
	if _, err := ParseMoveMode("lukewarm"); !errors.Is(err, ErrSyntax) {
		t.Errorf("ParseMoveMode(lukewarm) = %v, want ErrSyntax", err)
	}
	if s := MoveMode(9).String(); s != "mode-9" || MoveMode(9).Valid() {
		t.Errorf("MoveMode(9) = %q, valid %v", s, MoveMode(9).Valid())
	}
}

func TestMoveModeJSON(t *testing.T) {
	type rec struct {
		Mode MoveMode `json:"mode,omitempty"`
	}
	for _, tc := range []struct {
		in   rec
		want string
	}{
		{rec{}, `{}`}, {rec{MoveHot}, `{"mode":"hot"}`}, {rec{MoveWarm}, `{"mode":"warm"}`}, {rec{MoveCold}, `{"mode":"cold"}`},
	} {
		b, err := json.Marshal(tc.in)
		if err != nil || string(b) != tc.want {
			t.Errorf("Marshal(%v) = %s, %v; want %s", tc.in, b, err, tc.want)
		}
		var back rec
		if err := json.Unmarshal(b, &back); err != nil || back != tc.in {
			t.Errorf("Unmarshal(%s) = %v, %v", b, back, err)
		}
	}
	var r rec
	if err := json.Unmarshal([]byte(`{"mode":"tepid"}`), &r); err == nil {
		t.Error(`Unmarshal({"mode":"tepid"}) succeeded`)
	}
	if _, err := json.Marshal(rec{MoveMode(7)}); err == nil {
		t.Error("Marshal of mode 7 succeeded")
	}
}
