/* policy.h — authorization policies in the shape of AWS IoT Core's: JSON
 * documents of Allow/Deny statements over MQTT actions and resources,
 * compiled once into an immutable, shared policy set per principal and
 * evaluated without allocating on every CONNECT, PUBLISH, SUBSCRIBE and
 * delivery.
 *
 * Owns: the document grammar and its compiled form (policy.c), the policy
 * set, its evaluation, the explanation of a decision and the per-connection
 * decision cache (policy_eval.c). Does not own: where documents come from or
 * who they attach to (sec/policystore.h), who the principal is (the gateway
 * and the registry fill vg_policy_vars_t), what happens on a denial.
 *
 * The document (a subset of IoT Core's, strict: unknown fields are errors):
 *
 *   {"Version": "2012-10-17",
 *    "Statement": [                            an array (or one object)
 *      {"Sid": "optional label",
 *       "Effect": "Allow" | "Deny",
 *       "Action": "mqtt:Publish" | [...],       a string or a non-empty array
 *       "Resource": "topic/a*" | [...]}, ...],
 *    "Attach": {"roles": [...], "groups": [...], "devices": [...]}}
 *
 * "Attach" is optional and is read by the policy store only (it says which
 * principals the document applies to; see policystore.h).
 *
 * Actions: mqtt:Connect, mqtt:Publish, mqtt:Subscribe, mqtt:Receive,
 * mqtt:Retain, and mqtt:* for all five. Spelled exactly so (case matters).
 *
 * Resources, by the action they apply to:
 *   client/<pattern>       mqtt:Connect: the client id of the CONNECT
 *   topic/<pattern>        mqtt:Publish, mqtt:Receive, mqtt:Retain: a topic name
 *   topicfilter/<pattern>  mqtt:Subscribe: the topic filter as the client sent it
 *   *                      every action, every resource
 * A statement none of whose resources applies to any of its actions is an
 * error (it could never match: a typo, e.g. Subscribe on "topic/...").
 *
 * Patterns: '*' matches any run of bytes, '/' included (as in IoT Core);
 * every other byte matches itself. The MQTT wildcards are not wildcards
 * here: in a topicfilter resource they are literal characters compared with
 * the filter the client sent, so "topicfilter/alerts/#" allows subscribing
 * to exactly "alerts/#" (and neither "alerts/x" nor "alerts/+"), while a
 * star after "topicfilter/alerts/" allows any filter that starts with
 * "alerts/", wildcards included. A topic resource may not contain '+' or '#' at all
 * (no topic name does, so it could never match). '?' has no meaning.
 *
 * Subscriptions with wildcards: SUBSCRIBE checks mqtt:Subscribe on the
 * filter as a topicfilter resource; each message delivered through it is
 * then checked as mqtt:Receive on the message's topic. So an operator may be
 * allowed "topicfilter/#" and still receive only the topics its Receive
 * statements allow. A retained PUBLISH needs mqtt:Publish and mqtt:Retain
 * on its topic; the gateway makes both checks.
 *
 * Variables, substituted at evaluation time from vg_policy_vars_t:
 *   ${clientid}           the principal's client id (see vg_policy_vars_t)
 *   ${username}           the MQTT username it authenticated with
 *   ${cert.cn}            the common name of its client certificate
 *   ${device.attr.NAME}   attribute NAME of its registry entry
 *                         (NAME: 1-64 of A-Z a-z 0-9 _ - .)
 * A variable's value is always literal ('*' in a client id is a star, not a
 * wildcard). An unset or empty variable makes the resource match nothing:
 * "topic/alerts/${username}" never means "topic/alerts/". In topic and
 * topicfilter resources a value must also be a single topic level: one that
 * contains '/', '+' or '#' makes the resource match nothing, so that a
 * client id "#" cannot turn "topicfilter/alerts/${clientid}" into a
 * subscription to every alert. A '$' not followed by '{' is literal
 * ("topicfilter/$SYS/#"); "${" starts a variable and must be closed.
 *
 * Decision: an explicit Deny from any statement of any document of the set
 * wins; otherwise an Allow from any statement allows; otherwise deny.
 *
 * Threads: documents and sets are immutable after creation and may be used
 * from any number of threads; their reference counts are atomic. A cache is
 * owned by one connection (one thread). */
#ifndef VG_SEC_POLICY_H
#define VG_SEC_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits, checked before anything is allocated. A document over any of
 * them is refused with VG_ETOOBIG and a message naming the limit. */
#define VG_POLICY_MAX_DOC_BYTES (64 * 1024) /* the JSON text */
#define VG_POLICY_MAX_NAME 64               /* a document's name */
#define VG_POLICY_MAX_STATEMENTS 64         /* per document */
#define VG_POLICY_MAX_ACTIONS 16            /* entries of one statement's Action */
#define VG_POLICY_MAX_RESOURCES 64          /* entries of one statement's Resource */
#define VG_POLICY_MAX_PATTERN 256           /* bytes of one resource, escapes decoded */
#define VG_POLICY_MAX_PIECES 32             /* literals, stars and variables in one resource */
#define VG_POLICY_MAX_SID 64                /* bytes of a statement's Sid */
#define VG_POLICY_MAX_ATTACH 256            /* entries of one Attach list */
#define VG_POLICY_MAX_PRINCIPAL 128         /* bytes of a role, group or device id in Attach */
#define VG_POLICY_MAX_SET_DOCS 64           /* documents in one set */

typedef enum {
    VG_POLICY_CONNECT = 0,
    VG_POLICY_PUBLISH,
    VG_POLICY_SUBSCRIBE,
    VG_POLICY_RECEIVE,
    VG_POLICY_RETAIN,
    VG_POLICY__ACTIONS
} vg_policy_action_t;

/* A byte string that is not NUL-terminated; ptr NULL means unset. */
typedef struct {
    const char *ptr;
    size_t len;
} vg_policy_str_t;

typedef struct {
    vg_policy_str_t name, value;
} vg_policy_attr_t;

/* The principal's variables, as slices the caller keeps alive for the call
 * (the gateway keeps them in the connection). clientid: for a device, its
 * registered identity (the device id the registry or certificate proved),
 * so that "client/${clientid}" on the CONNECT admits only that id; for
 * other principals the client id the CONNECT carried. After the connect
 * check both are the same. A zeroed struct is a principal with no variables
 * set. attrs: n_attrs registry attributes, looked up by exact name. */
typedef struct {
    vg_policy_str_t clientid, username, cert_cn;
    const vg_policy_attr_t *attrs;
    size_t n_attrs;
} vg_policy_vars_t;

typedef enum {
    VG_POLICY_DENY_DEFAULT = 0, /* no statement allowed it */
    VG_POLICY_ALLOW,            /* an Allow statement matched and no Deny did */
    VG_POLICY_DENY_EXPLICIT,    /* a Deny statement matched */
} vg_policy_effect_t;

/* What decided: the document (index in the set), statement and resource
 * (indexes in the document, from 0) of the first matching Deny, else of the
 * first matching Allow; all -1 for a default deny. */
typedef struct {
    vg_policy_effect_t effect;
    int16_t doc, statement, resource;
} vg_policy_why_t;

typedef struct vg_policy_doc vg_policy_doc_t;
typedef struct vg_policy_set vg_policy_set_t;

/* "mqtt:Publish" for VG_POLICY_PUBLISH, ...; "?" out of range. */
const char *vg_policy_action_name(vg_policy_action_t a);
/* Parses "mqtt:Publish" (or "connect", "publish", ... as the CLI spells
 * them) into *out. VG_OK or VG_EINVAL; "mqtt:*" is not one action. */
int vg_policy_action_parse(const char *s, vg_policy_action_t *out);

/* Parses and compiles the document text[0..len) named name (1 to
 * VG_POLICY_MAX_NAME bytes of A-Z a-z 0-9 _ - .; the store uses the file
 * name without ".json"). On success *out is a new document with one
 * reference, owned by the caller (vg_policy_doc_unref). On failure *out is
 * NULL and err (cap bytes, may be NULL) holds one line such as
 *   policy dev: statement 2: unknown action "mqtt:Pub"
 * Returns VG_OK, VG_EMALFORMED (not JSON or not a valid document: the
 * message says which), VG_ETOOBIG (a limit above), VG_EINVAL (bad name),
 * VG_ENOMEM. text need not outlive the call. */
int vg_policy_parse(const char *name, const char *text, size_t len, vg_policy_doc_t **out, char *err, size_t cap);

/* Another reference to doc (returned); any thread. */
vg_policy_doc_t *vg_policy_doc_ref(vg_policy_doc_t *doc);
/* Drops a reference; the last one frees it. NULL is accepted. */
void vg_policy_doc_unref(vg_policy_doc_t *doc);
/* The document's name, NUL-terminated, valid while it is referenced. */
const char *vg_policy_doc_name(const vg_policy_doc_t *doc);
/* Number of statements. */
size_t vg_policy_doc_statements(const vg_policy_doc_t *doc);

typedef enum { VG_POLICY_ATTACH_ROLE = 0, VG_POLICY_ATTACH_GROUP, VG_POLICY_ATTACH_DEVICE } vg_policy_attach_t;
/* Whether the document's "Attach" lists name[0..len) under kind. */
bool vg_policy_doc_attached(const vg_policy_doc_t *doc, vg_policy_attach_t kind, const char *name, size_t len);

/* The built-in documents (policy_builtin.c), as JSON text through
 * vg_policy_parse; `vigil policy show NAME` can print them.
 *
 * VG_POLICY_BUILTIN_DEVICE, attached to role "device": connect only as its
 * own id (client/${clientid}, with clientid the device's registered
 * identity); publish only its own telemetry, on devices/${clientid}/telemetry
 * and on telemetry_topic (the gateway's --telemetry-topic, where payloads
 * carry their deviceId); subscribe to and receive only alerts/${clientid}.
 * No retained publishes, nothing else.
 *
 * VG_POLICY_BUILTIN_OPERATOR, attached to role "operator": connect with its
 * user name as client id (client/${username}); subscribe to any filter under
 * alerts/ (alerts/# included), ack_topic/result and $SYS/, and receive those
 * topics; publish acknowledgements on ack_topic (--control-topic,
 * vigil/alerts/ack).
 *
 * The topics must be 1-200 bytes without '+', '#', '*' or "${" (VG_EINVAL,
 * with a message in err). Same returns and ownership as vg_policy_parse. */
#define VG_POLICY_BUILTIN_DEVICE "vigil-device"
#define VG_POLICY_BUILTIN_OPERATOR "vigil-operator"
int vg_policy_default_device(const char *telemetry_topic, vg_policy_doc_t **out, char *err, size_t cap);
int vg_policy_operator_role(const char *ack_topic, vg_policy_doc_t **out, char *err, size_t cap);

/* Builds a set from n documents (n <= VG_POLICY_MAX_SET_DOCS; 0 gives a set
 * that denies everything). The set takes its own reference to each document;
 * the caller keeps its own. The order is kept and only matters to which
 * statement an explanation names. *out has one reference, the caller's.
 * Returns VG_OK, VG_ETOOBIG, VG_ENOMEM. */
int vg_policy_set_new(vg_policy_doc_t *const *docs, size_t n, vg_policy_set_t **out);
vg_policy_set_t *vg_policy_set_ref(vg_policy_set_t *set);
void vg_policy_set_unref(vg_policy_set_t *set);
size_t vg_policy_set_docs(const vg_policy_set_t *set);
/* Document i of the set (borrowed, valid while the set is referenced). */
const vg_policy_doc_t *vg_policy_set_doc(const vg_policy_set_t *set, size_t i);

/* Decides action on res[0..len) (the client id for Connect, the filter for
 * Subscribe, the topic otherwise) for the principal vars (NULL: none set).
 * Returns true if allowed; *why (may be NULL) says what decided. Never
 * allocates, never fails; set NULL denies. Any thread. */
bool vg_policy_check(const vg_policy_set_t *set, vg_policy_action_t action, const char *res, size_t len,
                     const vg_policy_vars_t *vars, vg_policy_why_t *why);

/* Decides as vg_policy_check and writes one line saying what decided into
 * out[0..cap) (always NUL-terminated if cap > 0, truncated to fit), e.g.
 *   ALLOW mqtt:Publish "devices/d1/telemetry": policy "vigil-device" statement 2
 *   (resource "topic/devices/${clientid}/telemetry")
 * Returns the decision. For `vigil policy test`; allocates nothing. */
bool vg_policy_explain(const vg_policy_set_t *set, vg_policy_action_t action, const char *res, size_t len,
                       const vg_policy_vars_t *vars, char *out, size_t cap);

/* The per-connection decision cache: a few recent decisions keyed by action
 * and resource (hash, then a full compare of the stored bytes). Resources
 * longer than VG_POLICY_CACHE_KEY bytes are not cached. It remembers the set
 * it was filled for and empties itself when asked about another one; when
 * the principal's vars change, the owner calls vg_policy_cache_reset. About
 * 64 bytes per entry, no allocation: embed it in the connection. */
#define VG_POLICY_CACHE_ENTRIES 8
#define VG_POLICY_CACHE_KEY 46

typedef struct {
    uint32_t hash;
    uint16_t len; /* 0: empty entry */
    uint8_t action;
    uint8_t effect;
    int16_t doc, statement, resource;
    char key[VG_POLICY_CACHE_KEY];
} vg_policy_cache_entry_t;

typedef struct {
    const vg_policy_set_t *set; /* not a reference: the connection holds one */
    uint32_t next;              /* round-robin victim */
    uint32_t hits, misses;
    vg_policy_cache_entry_t e[VG_POLICY_CACHE_ENTRIES];
} vg_policy_cache_t;

/* Empties c (also a valid first initialisation, as is zeroing it). */
void vg_policy_cache_reset(vg_policy_cache_t *c);
/* vg_policy_check through the cache c (owner thread only). */
bool vg_policy_cache_check(vg_policy_cache_t *c, const vg_policy_set_t *set, vg_policy_action_t action, const char *res,
                           size_t len, const vg_policy_vars_t *vars, vg_policy_why_t *why);

#endif
