package mapsrv

import (
	"net/http"
)

// PolicyBody is the body of POST /v1/policies: the two tenants whose tasks
// may reach each other.
type PolicyBody struct {
	Tenants [2]string `json:"tenants"`
}

func (a *api) listPolicies(w http.ResponseWriter, r *http.Request) {
	ps, err := a.svc.Policies(r.Context())
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, nonNil(ps))
}

func (a *api) addPolicy(w http.ResponseWriter, r *http.Request) {
	var b PolicyBody
	if !decode(w, r, &b) {
		return
	}
	p, err := a.svc.AddPolicy(r.Context(), b.Tenants[0], b.Tenants[1])
	if err != nil {
		fail(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, p)
}

func (a *api) deletePolicy(w http.ResponseWriter, r *http.Request) {
	if err := a.svc.DeletePolicy(r.Context(), r.PathValue("a"), r.PathValue("b")); err != nil {
		fail(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
