"""Pulls: the jobs `schedules.yaml` lists under `pulls:`, each bringing vendor data in as
signals. A kind has an options model (`PULL_KINDS`); the scheduler calls
`run_pull(kind, options, ctx)`.

    salesforce_accounts  Accounts changed since the cursor (SOQL by LastModifiedDate, paged by
                         nextRecordsUrl): our Account rows, `contract_update` when renewal
                         date, ARR or seats changed, `churn_prediction` when the field is set
    zendesk_tickets      the cursor-based incremental ticket export: `support_ticket`, and
                         `support_escalation` for urgent or escalation-tagged tickets
    intercom_conversations  Intercom's conversation search (updated_at, starting_after
                         cursor), mapped as the Intercom webhook's notifications are
    usage_file_drop      *.jsonl and *.csv files dropped in a folder, imported as by
                         `csauto ingest`, then moved to done/ or rejected/
    amplitude_usage      the Export API's events, hour by hour: `usage_daily` per account
                         and day, recomputed from every hour holding the day's events
    mixpanel_usage       the raw event export, day by day (the last days read again for
                         late events): `usage_daily` per account and day, as Amplitude
    hubspot_companies    HubSpot companies changed since the cursor (CRM search by
                         hs_lastmodifieddate): our Account rows, `contract_update`
    sql_query            a warehouse's rows (a read-only, parameterised query) as accounts
                         or signals, by a column -> field mapping

Exactly once by order, page by page: signals first (each with a deterministic idempotency
key), then accounts, then the cursor (table `pull_cursors`). A crash in between re-reads a
page whose signals the store already holds, and their keys drop them. Salesforce re-reads
the minute before its cursor: a record committed late carries an earlier LastModifiedDate.

Vendor failures leave as the connector's ConnectorError subclasses, the cursor where the
last committed page left it; unknown kinds, bad options and missing connectors are
ConfigErrors. A record that cannot become an account or a signal is logged and skipped
(salesforce, zendesk), or held in the quarantine with its reason (intercom_conversations,
as the Intercom webhook does; amplitude_usage and mixpanel_usage; hubspot_companies and
sql_query under the source `<kind>:<cursor name>`, mapping.held_source, which `csauto
sources status` counts); editing it in the vendor brings it back.

    common.py       the context, result and options every kind shares; the guarded connector
    salesforce.py   salesforce_accounts
    zendesk.py      zendesk_tickets
    file_drop.py    usage_file_drop
    intercom.py     intercom_conversations
    amplitude.py    amplitude_usage
    mixpanel.py     mixpanel_usage
    usage_events.py the analytics mapping and aggregation both share
    export_http.py  the analytics exports' HTTPS client (Basic auth, Retry-After)
    hubspot_companies.py  hubspot_companies
    sql.py          sql_query
    mapping.py      declarative field mappings and holding, for hubspot_companies and sql_query
    run.py          `PULL_KINDS` and `run_pull`
"""

from csautomation.ingest.pulls.amplitude import KIND_AMPLITUDE, AmplitudeUsageOptions
from csautomation.ingest.pulls.common import PullContext, PullOptions, PullResult
from csautomation.ingest.pulls.file_drop import KIND_FILES, UsageFileDropOptions
from csautomation.ingest.pulls.intercom import KIND_IC, IntercomConversationsOptions
from csautomation.ingest.pulls.mixpanel import KIND_MIXPANEL, MixpanelUsageOptions
from csautomation.ingest.pulls.run import PULL_KINDS, run_pull
from csautomation.ingest.pulls.salesforce import KIND_SF, SalesforceAccountsOptions, account_soql
from csautomation.ingest.pulls.zendesk import KIND_ZD, ZendeskTicketsOptions

__all__ = [
    "KIND_AMPLITUDE",
    "KIND_MIXPANEL",
    "AmplitudeUsageOptions",
    "MixpanelUsageOptions",
    "KIND_FILES",
    "KIND_IC",
    "KIND_SF",
    "KIND_ZD",
    "PULL_KINDS",
    "IntercomConversationsOptions",
    "PullContext",
    "PullOptions",
    "PullResult",
    "SalesforceAccountsOptions",
    "UsageFileDropOptions",
    "ZendeskTicketsOptions",
    "account_soql",
    "run_pull",
]
