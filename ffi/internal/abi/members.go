package abi

import (
	"context"
	"time"
)

// Methods of membership-checked groups (core/members.go, docs/trust.md).

type inviteMemberParams struct {
	Group   string `json:"group"`
	Contact string `json:"contact"`
	Role    string `json:"role"`
	Name    string `json:"name"`
	Replace string `json:"replace"` // a member whose entry the contact's device takes over (core.Backend.ReplaceMember)
}

// parseInviteMember parses {"group", "contact", "role"?, "name"?}; group
// and contact are required; core checks the contact code and the role.
func parseInviteMember(p []byte) (inviteMemberParams, error) {
	var q inviteMemberParams
	if err := decodeStrict("params", p, &q); err != nil {
		return q, err
	}
	if q.Contact == "" {
		return q, Errorf(CodeBadParams, "params: contact is required")
	}
	if q.Replace != "" && (q.Role != "" || q.Name != "") {
		return q, Errorf(CodeBadParams, "params: replace keeps the member's role and name (no role or name with it)")
	}
	return q, requireGroup(q.Group)
}

// groupInviteMember adds a member and answers the invite sealed to it.
func groupInviteMember(ctx context.Context, n *node, q inviteMemberParams) (any, error) {
	g, err := n.resolve(q.Group)
	if err != nil {
		return nil, err
	}
	var u string
	if q.Replace != "" {
		u, err = n.b.ReplaceMember(ctx, g.ID, q.Replace, q.Contact)
	} else {
		u, err = n.b.InviteMember(ctx, g.ID, q.Contact, q.Role, q.Name)
	}
	if err != nil {
		return nil, err
	}
	return struct {
		URI string `json:"uri"`
	}{u}, nil
}

func groupMembers(ctx context.Context, n *node, q groupParams) (any, error) {
	g, err := n.resolve(q.Group)
	if err != nil {
		return nil, err
	}
	return n.b.Members(ctx, g.ID)
}

type memberParams struct {
	Group  string `json:"group"`
	Member string `json:"member"` // contact code, member key or unique name
	Role   string `json:"role,omitempty"`
}

// parseMember parses {"group", "member"}, both required.
func parseMember(p []byte) (memberParams, error) {
	var q memberParams
	if err := decodeStrict("params", p, &q); err != nil {
		return q, err
	}
	if q.Member == "" {
		return q, Errorf(CodeBadParams, "params: member is required")
	}
	if q.Role != "" {
		return q, Errorf(CodeBadParams, "params: role is not a parameter of group.remove_member")
	}
	return q, requireGroup(q.Group)
}

// parseSetRole parses {"group", "member", "role"}, all required.
func parseSetRole(p []byte) (memberParams, error) {
	var q memberParams
	if err := decodeStrict("params", p, &q); err != nil {
		return q, err
	}
	switch {
	case q.Member == "":
		return q, Errorf(CodeBadParams, "params: member is required")
	case q.Role == "":
		return q, Errorf(CodeBadParams, "params: role is required")
	}
	return q, requireGroup(q.Group)
}

func groupRemoveMember(ctx context.Context, n *node, q memberParams) (any, error) {
	g, err := n.resolve(q.Group)
	if err != nil {
		return nil, err
	}
	return n.b.RemoveMember(ctx, g.ID, q.Member)
}

func groupSetRole(ctx context.Context, n *node, q memberParams) (any, error) {
	g, err := n.resolve(q.Group)
	if err != nil {
		return nil, err
	}
	return n.b.SetMemberRole(ctx, g.ID, q.Member, q.Role)
}

// groupPing opens a tunnel to every member node (core.Backend.PingMembers).
func groupPing(ctx context.Context, n *node, q groupParams) (any, error) {
	g, err := n.resolve(q.Group)
	if err != nil {
		return nil, err
	}
	return n.b.PingMembers(ctx, g.ID)
}

type bearerParams struct {
	Group    string `json:"group"`
	Role     string `json:"role"`
	Uses     int    `json:"uses"`
	ExpiresS int64  `json:"expires_s"`
}

// parseBearer parses {"group", "role"?, "uses"?, "expires_s"?}; uses and
// expires_s must not be negative (core checks their upper bounds).
func parseBearer(p []byte) (bearerParams, error) {
	var q bearerParams
	if err := decodeStrict("params", p, &q); err != nil {
		return q, err
	}
	if q.Uses < 0 || q.ExpiresS < 0 || q.ExpiresS > 1<<32 {
		return q, Errorf(CodeBadParams, "params: uses and expires_s must not be negative (expires_s: seconds, at most 90 days)")
	}
	return q, requireGroup(q.Group)
}

// groupInviteBearer makes a bearer invite (core.Backend.InviteBearer).
func groupInviteBearer(ctx context.Context, n *node, q bearerParams) (any, error) {
	g, err := n.resolve(q.Group)
	if err != nil {
		return nil, err
	}
	u, err := n.b.InviteBearer(ctx, g.ID, q.Role, q.Uses, time.Duration(q.ExpiresS)*time.Second)
	if err != nil {
		return nil, err
	}
	return struct {
		URI string `json:"uri"`
	}{u}, nil
}

type revokeParams struct {
	Group string `json:"group"`
	URI   string `json:"uri"`
}

// parseRevoke parses {"group", "uri"}, both required.
func parseRevoke(p []byte) (revokeParams, error) {
	var q revokeParams
	if err := decodeStrict("params", p, &q); err != nil {
		return q, err
	}
	if q.URI == "" {
		return q, Errorf(CodeBadParams, "params: uri is required")
	}
	return q, requireGroup(q.Group)
}

func groupRevokeInvite(ctx context.Context, n *node, q revokeParams) (any, error) {
	g, err := n.resolve(q.Group)
	if err != nil {
		return nil, err
	}
	return n.b.RevokeInvite(ctx, g.ID, q.URI)
}
