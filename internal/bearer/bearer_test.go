package bearer

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestCheck(t *testing.T) {
	tok := New([]string{"adm1", "adm2"}, []string{"look"})
	for _, tc := range []struct {
		header  string
		present bool
		role    Role
	}{
		{"", false, None},
		{"Bearer adm1", true, Admin},
		{"Bearer adm2", true, Admin},
		{"Bearer look", true, ReadOnly},
		{"Bearer adm", true, None},
		{"Bearer adm11", true, None},
		{"Bearer ", true, None},
		{"Basic adm1", false, None},
		{"bearer adm1", false, None},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		if tc.header != "" {
			r.Header.Set("Authorization", tc.header)
		}
		_, present, role := tok.Check(r)
		if present != tc.present || role != tc.role {
			t.Errorf("%q: present %v role %v, want %v %v", tc.header, present, role, tc.present, tc.role)
		}
	}
	if _, _, role := New(nil, nil).Check(httptest.NewRequest(http.MethodGet, "/", nil)); role != None {
		t.Errorf("no tokens: role %v, want None", role)
	}
}

func TestAllowed(t *testing.T) {
	for _, tc := range []struct {
		role   Role
		method string
		want   bool
	}{
		{Admin, http.MethodPost, true},
		{Admin, http.MethodGet, true},
		{ReadOnly, http.MethodGet, true},
		{ReadOnly, http.MethodHead, true},
		{ReadOnly, http.MethodPost, false},
		{ReadOnly, http.MethodDelete, false},
		{None, http.MethodGet, false},
	} {
		if got := Allowed(tc.role, tc.method); got != tc.want {
			t.Errorf("Allowed(%v, %s) = %v, want %v", tc.role, tc.method, got, tc.want)
		}
	}
}
