"""FreeSWITCH hangup cause names (switch_types.h ``switch_call_cause_t``, the "Hangup Cause
Code Table" of the FreeSWITCH documentation).

``uuid_kill <uuid> <CAUSE>`` maps an unknown name to NONE without complaint, so a typo in the
conf file would silently change the SIP answer; config validation checks against this set.
"""
from __future__ import annotations

__all__ = ["HANGUP_CAUSES", "is_hangup_cause"]

HANGUP_CAUSES: frozenset[str] = frozenset(
    {
        # Q.850
        "UNSPECIFIED",
        "UNALLOCATED_NUMBER",
        "NO_ROUTE_TRANSIT_NET",
        "NO_ROUTE_DESTINATION",
        "CHANNEL_UNACCEPTABLE",
        "CALL_AWARDED_DELIVERED",
        "NORMAL_CLEARING",
        "USER_BUSY",
        "NO_USER_RESPONSE",
        "NO_ANSWER",
        "SUBSCRIBER_ABSENT",
        "CALL_REJECTED",
        "NUMBER_CHANGED",
        "REDIRECTION_TO_NEW_DESTINATION",
        "EXCHANGE_ROUTING_ERROR",
        "DESTINATION_OUT_OF_ORDER",
        "INVALID_NUMBER_FORMAT",
        "FACILITY_REJECTED",
        "RESPONSE_TO_STATUS_ENQUIRY",
        "NORMAL_UNSPECIFIED",
        "NORMAL_CIRCUIT_CONGESTION",
        "NETWORK_OUT_OF_ORDER",
        "NORMAL_TEMPORARY_FAILURE",
        "SWITCH_CONGESTION",
        "ACCESS_INFO_DISCARDED",
        "REQUESTED_CHAN_UNAVAIL",
        "PRE_EMPTED",
        "FACILITY_NOT_SUBSCRIBED",
        "OUTGOING_CALL_BARRED",
        "INCOMING_CALL_BARRED",
        "BEARERCAPABILITY_NOTAUTH",
        "BEARERCAPABILITY_NOTAVAIL",
        "SERVICE_UNAVAILABLE",
        "BEARERCAPABILITY_NOTIMPL",
        "CHAN_NOT_IMPLEMENTED",
        "FACILITY_NOT_IMPLEMENTED",
        "SERVICE_NOT_IMPLEMENTED",
        "INVALID_CALL_REFERENCE",
        "INCOMPATIBLE_DESTINATION",
        "INVALID_MSG_UNSPECIFIED",
        "MANDATORY_IE_MISSING",
        "MESSAGE_TYPE_NONEXIST",
        "WRONG_MESSAGE",
        "IE_NONEXIST",
        "INVALID_IE_CONTENTS",
        "WRONG_CALL_STATE",
        "RECOVERY_ON_TIMER_EXPIRE",
        "MANDATORY_IE_LENGTH_ERROR",
        "PROTOCOL_ERROR",
        "INTERWORKING",
        # FreeSWITCH's own (500 and up)
        "SUCCESS",
        "ORIGINATOR_CANCEL",
        "CRASH",
        "SYSTEM_SHUTDOWN",
        "LOSE_RACE",
        "MANAGER_REQUEST",
        "BLIND_TRANSFER",
        "ATTENDED_TRANSFER",
        "ALLOTTED_TIMEOUT",
        "USER_CHALLENGE",
        "MEDIA_TIMEOUT",
        "PICKED_OFF",
        "USER_NOT_REGISTERED",
        "PROGRESS_TIMEOUT",
        "INVALID_GATEWAY",
        "GATEWAY_DOWN",
        "INVALID_URL",
        "INVALID_PROFILE",
        "NO_PICKUP",
        "SRTP_READ_ERROR",
        "BOWOUT",
        # SIP 6xx / STIR-SHAKEN (800 and up)
        "BUSY_EVERYWHERE",
        "DECLINE",
        "DOES_NOT_EXIST_ANYWHERE",
        "NOT_ACCEPTABLE",
        "UNWANTED",
        "NO_IDENTITY",
        "BAD_IDENTITY_INFO",
        "UNSUPPORTED_CERTIFICATE",
        "INVALID_IDENTITY",
        "STALE_DATE",
    }
)


def is_hangup_cause(name: object) -> bool:
    """True for an exact (upper-case) FreeSWITCH hangup cause name."""
    return isinstance(name, str) and name in HANGUP_CAUSES
