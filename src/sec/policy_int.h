/* policy_int.h — the compiled form of a policy document, shared by
 * policy.c (which builds it) and policy_eval.c (which evaluates it). Not
 * for other modules: they see vg_policy_doc_t as opaque.
 *
 * A document is one allocation: the struct, then its arrays (statements,
 * resources, pieces, attachment entries) and a byte pool with the name,
 * literal bytes, variable names, each resource's source text (for
 * explanations) and the Sids. Offsets into the pool are 32-bit; lengths are
 * bounded by the limits in policy.h. */
#ifndef VG_SEC_POLICY_INT_H
#define VG_SEC_POLICY_INT_H

#include "sec/policy.h"

#include <stdatomic.h>

/* What a piece of a pattern is. */
enum {
    PC_LIT = 0,  /* pool[off..off+len) literally */
    PC_STAR,     /* any run of bytes */
    PC_CLIENTID, /* ${clientid} */
    PC_USERNAME, /* ${username} */
    PC_CERT_CN,  /* ${cert.cn} */
    PC_ATTR,     /* ${device.attr.NAME}: NAME at pool[off..off+len) */
};

/* What a resource names. */
enum {
    RT_CLIENT = 0, /* client/... */
    RT_TOPIC,      /* topic/... */
    RT_FILTER,     /* topicfilter/... */
    RT_ANY,        /* "*" */
};

typedef struct {
    uint8_t kind;
    uint16_t len;
    uint32_t off;
} pol_piece_t;

typedef struct {
    uint8_t type;      /* RT_* */
    bool has_var;      /* some piece is a variable */
    bool has_star;     /* some piece is a star */
    uint16_t n_pieces; /* pieces[first_piece ..] */
    uint32_t first_piece;
    uint32_t lit_len; /* bytes of the literal pieces: a lower bound on what matches */
    uint32_t src_off; /* the resource as written, for explanations */
    uint16_t src_len;
} pol_res_t;

typedef struct {
    bool deny;
    uint8_t actions; /* bit (1 << vg_policy_action_t) */
    uint16_t n_res;  /* res[first_res ..] */
    uint32_t first_res;
    uint32_t sid_off; /* Sid, sid_len 0 if none */
    uint16_t sid_len;
} pol_stmt_t;

typedef struct {
    uint8_t kind; /* vg_policy_attach_t */
    uint16_t len;
    uint32_t off;
} pol_attach_t;

struct vg_policy_doc {
    atomic_int refs;
    const char *name; /* in pool, NUL-terminated */
    size_t n_stmt, n_res, n_pieces, n_attach, pool_len;
    pol_stmt_t *stmt;
    pol_res_t *res;
    pol_piece_t *pieces;
    pol_attach_t *attach;
    char *pool;
};

/* Writes s[0..n) into out[0..cap) (cap >= 8) as a short printable
 * quotation: at most 48 bytes of it, '"', '\\', control and non-ASCII bytes
 * as \xNN, "..." if cut, NUL-terminated; so that a message built from
 * hostile text stays one readable line. */
void pol_quote(char *out, size_t cap, const char *s, size_t n);

/* The action bits a resource type can apply to. */
static inline unsigned pol_type_actions(unsigned type)
{
    switch (type) {
    case RT_CLIENT:
        return 1u << VG_POLICY_CONNECT;
    case RT_TOPIC:
        return 1u << VG_POLICY_PUBLISH | 1u << VG_POLICY_RECEIVE | 1u << VG_POLICY_RETAIN;
    case RT_FILTER:
        return 1u << VG_POLICY_SUBSCRIBE;
    default:
        return (1u << VG_POLICY__ACTIONS) - 1;
    }
}

#endif
