package mapsrv

import (
	"context"
	"fmt"
	"strings"

	"github.com/ilamesh/ilamesh/ila"
)

// PolicyPrefix holds ila.Policy records: /ila/v1/policies/<tenant>/<tenant>,
// the two tenant names in ascending order (docs/TENANTS.md).
const PolicyPrefix = Prefix + "policies/"

// PolicyKey returns the key of the policy between tenants a and b (in
// either order).
func PolicyKey(a, b string) string {
	if b < a {
		a, b = b, a
	}
	return PolicyPrefix + a + "/" + b
}

// DecodePolicy decodes the value of a policy key and checks it against the
// key.
func DecodePolicy(key string, b []byte) (ila.Policy, error) {
	var p ila.Policy
	if err := decodeStrict(b, &p); err != nil {
		return p, fmt.Errorf("policy %s: %w: %w", key, ErrMalformed, err)
	}
	want, err := ila.NewPolicy(p.Tenants[0], p.Tenants[1])
	if err != nil {
		return p, fmt.Errorf("policy %s: %w: %w", key, ErrMalformed, err)
	}
	if want.Tenants != p.Tenants || PolicyKey(p.Tenants[0], p.Tenants[1]) != key {
		return p, fmt.Errorf("policy %s: tenants %q do not match the key: %w", key, p.Tenants, ErrMalformed)
	}
	return p, nil
}

func checkPolicyTenants(a, b string) (ila.Policy, error) {
	for _, n := range []string{a, b} {
		if err := CheckName("tenant", n); err != nil {
			return ila.Policy{}, err
		}
	}
	p, err := ila.NewPolicy(a, b)
	if err != nil {
		return p, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return p, nil
}

// AddPolicy lets tenants a and b reach each other. Adding an existing
// policy returns it unchanged.
func (s *Service) AddPolicy(ctx context.Context, a, b string) (ila.Policy, error) {
	p, err := checkPolicyTenants(a, b)
	if err != nil {
		return p, err
	}
	key := PolicyKey(a, b)
	kvs, err := s.store.Get(ctx, key)
	if err != nil {
		return p, s.storeErr(fmt.Errorf("get policy %s: %w", p, err))
	}
	if kvs[0].Revision != 0 {
		old, err := DecodePolicy(key, kvs[0].Value)
		if err == nil {
			return old, nil
		}
		s.malformed(kvs[0], err) // overwrite a malformed value
	}
	p.Created = s.cfg.Now().UTC()
	v, err := encode(p)
	if err != nil {
		return p, err
	}
	if _, err := s.store.Txn(ctx, []Cond{{Key: key, Revision: kvs[0].Revision}}, []Op{{Key: key, Value: v}}); err != nil {
		return p, s.storeErr(fmt.Errorf("put policy %s: %w", p, err))
	}
	return p, nil
}

// DeletePolicy removes the policy between a and b: their tasks no longer
// reach each other. ErrNotFound if there is none.
func (s *Service) DeletePolicy(ctx context.Context, a, b string) error {
	p, err := checkPolicyTenants(a, b)
	if err != nil {
		return err
	}
	key := PolicyKey(a, b)
	kvs, err := s.store.Get(ctx, key)
	if err != nil {
		return s.storeErr(fmt.Errorf("get policy %s: %w", p, err))
	}
	if kvs[0].Revision == 0 {
		return fmt.Errorf("policy %s: %w", p, ErrNotFound)
	}
	if _, err := s.store.Txn(ctx, []Cond{{Key: key, Revision: kvs[0].Revision}}, []Op{{Key: key, Delete: true}}); err != nil {
		return s.storeErr(fmt.Errorf("delete policy %s: %w", p, err))
	}
	return nil
}

// Policies lists the tenant policies, skipping malformed values.
func (s *Service) Policies(ctx context.Context) ([]ila.Policy, error) {
	kvs, _, err := s.store.List(ctx, PolicyPrefix)
	if err != nil {
		return nil, s.storeErr(fmt.Errorf("list policies: %w", err))
	}
	var out []ila.Policy
	for _, kv := range kvs {
		if strings.Count(strings.TrimPrefix(kv.Key, PolicyPrefix), "/") != 1 {
			continue
		}
		p, err := DecodePolicy(kv.Key, kv.Value)
		if err != nil {
			s.malformed(kv, err)
			continue
		}
		out = append(out, p)
	}
	return out, nil
}
