/*-------------------------------------------------------------------------
 *
 * src/checks.c
 *		SQL-callable shape checks used by the CHECK constraints of the raw
 *		events table.  They apply the same rules as ingest's validator, at a
 *		fraction of the cost of regular expressions, so a DBA's plain INSERT
 *		is held to the wire contract too.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"

#include "usage_tracking.h"

PG_FUNCTION_INFO_V1(usage_tracking_valid_shape);

/*
 * Copy a text argument into a NUL-terminated buffer; texts longer than the
 * buffer are reported as too long (every checked shape is short).
 */
static bool
text_to_buf(text *t, char *buf, size_t bufsize)
{
	size_t		len = VARSIZE_ANY_EXHDR(t);

	if (len >= bufsize)
		return false;
	memcpy(buf, VARDATA_ANY(t), len);
	buf[len] = '\0';
	return true;
}

/* SQL function: valid_shape(kind "char", value text) returns boolean */
Datum
usage_tracking_valid_shape(PG_FUNCTION_ARGS)
{
	char		kind = PG_GETARG_CHAR(0);
	text	   *value = PG_GETARG_TEXT_PP(1);
	char		buf[128];

	if (!text_to_buf(value, buf, sizeof(buf)))
		PG_RETURN_BOOL(false);

	switch (kind)
	{
		case 'e':
			PG_RETURN_BOOL(ut_valid_event_id(buf));
		case 'u':
			PG_RETURN_BOOL(ut_valid_user_hash(buf));
		case 's':
			PG_RETURN_BOOL(ut_valid_source(buf));
		case 'm':
			PG_RETURN_BOOL(ut_valid_model(buf));
		case 'i':
			PG_RETURN_BOOL(ut_valid_install_id(buf));
		default:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown shape kind \"%c\"", kind),
					 errhint("Use e (event_id), u (user hash), s (source), m (model) or i (install_id).")));
	}
	PG_RETURN_BOOL(false);		/* keep compiler quiet */
}
