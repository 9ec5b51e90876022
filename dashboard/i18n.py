"""Every label the cockpit shows, in English and Chinese.

Keys are shared by both languages (a test checks this), so a label missing in one language
fails the tests instead of showing a key name to an analyst. Values may hold ``{name}``
placeholders filled by :func:`t`.
"""

from __future__ import annotations

LANGUAGES: dict[str, str] = {"en": "EN", "zh": "中文"}

LABELS: dict[str, dict[str, str]] = {
    "en": {
        "title": "Risk cockpit",
        "subtitle": "live transaction monitoring",
        "tps": "Transactions/s",
        "tps_note": "last minute",
        "open_alerts": "Open alerts",
        "open_note": "not yet acknowledged",
        "tier_1": "Watch",
        "tier_2": "Review",
        "tier_3": "Critical",
        "last_5m": "last 5 min",
        "in_60m": "60 min",
        "chart_title": "Alerts per minute by tier · last 60 min",
        "chart_x": "time (UTC)",
        "chart_y": "alerts",
        "alerts_title": "Latest alerts",
        "tier_filter": "Tier",
        "all": "All",
        "col_scored_at": "Scored at (UTC)",
        "col_tier": "Tier",
        "col_score": "Score",
        "col_account": "Account",
        "col_tx": "Transaction",
        "col_alert": "Alert id",
        "col_amount": "Amount",
        "col_channel": "Channel",
        "col_country": "Country",
        "col_reasons": "Top reasons",
        "col_scenario": "Scenario",
        "col_ack": "Ack.",
        "actor_placeholder": "Analyst name (required)",
        "comment_placeholder": "Comment (optional)",
        "ack_button": "Acknowledge selected",
        "fraud_button": "Confirmed fraud",
        "fp_button": "False positive",
        "dispo_done": "Recorded {n} disposition(s); the fraud model learns from them.",
        "ack_done": "Acknowledged {n} alert(s); the table shows it once the store has it.",
        "ack_skipped": "{n} already acknowledged, skipped.",
        "ack_no_selection": "Select one or more alerts in the table first.",
        "ack_no_actor": "Enter your analyst name before acknowledging.",
        "ack_failed": "Could not send the acknowledgement: {error}",
        "updated": "updated {time} UTC",
        "store_error": "Store unavailable, showing the last data: {error}",
        "no_rows": "No alerts",
        "filter": "Filter…",
    },
    "zh": {
        "title": "风险驾驶舱",
        "subtitle": "实时交易监控",
        "tps": "交易/秒",
        "tps_note": "最近1分钟",
        "open_alerts": "未处理预警",
        "open_note": "尚未确认",
        "tier_1": "关注",
        "tier_2": "审查",
        "tier_3": "严重",
        "last_5m": "最近5分钟",
        "in_60m": "60分钟",
        "chart_title": "每分钟预警数（按等级）· 最近60分钟",
        "chart_x": "时间（UTC）",
        "chart_y": "预警数",
        "alerts_title": "最新预警",
        "tier_filter": "等级",
        "all": "全部",
        "col_scored_at": "评分时间（UTC）",
        "col_tier": "等级",
        "col_score": "评分",
        "col_account": "账户",
        "col_tx": "交易号",
        "col_alert": "告警编号",
        "col_amount": "金额",
        "col_channel": "渠道",
        "col_country": "国家",
        "col_reasons": "主要原因",
        "col_scenario": "场景",
        "col_ack": "已确认",
        "actor_placeholder": "分析员姓名（必填）",
        "comment_placeholder": "备注（可选）",
        "ack_button": "确认所选预警",
        "fraud_button": "确认欺诈",
        "fp_button": "误报",
        "dispo_done": "已记录 {n} 条处置结论；欺诈模型将据此学习。",
        "ack_done": "已确认 {n} 条预警；数据写入后表格将显示。",
        "ack_skipped": "{n} 条此前已确认，已跳过。",
        "ack_no_selection": "请先在表格中选择一条或多条预警。",
        "ack_no_actor": "确认前请输入分析员姓名。",
        "ack_failed": "确认发送失败：{error}",
        "updated": "更新于 {time} UTC",
        "store_error": "数据存储不可用，显示的是上次的数据：{error}",
        "no_rows": "暂无预警",
        "filter": "筛选…",
    },
}

# AG Grid's own texts (filter menus, overlays); English is the grid's built-in default.
GRID_LOCALE: dict[str, dict[str, str]] = {
    "en": {},
    "zh": {
        "filterOoo": "筛选…",
        "equals": "等于",
        "notEqual": "不等于",
        "lessThan": "小于",
        "greaterThan": "大于",
        "lessThanOrEqual": "小于等于",
        "greaterThanOrEqual": "大于等于",
        "inRange": "范围",
        "contains": "包含",
        "notContains": "不包含",
        "startsWith": "开头是",
        "endsWith": "结尾是",
        "blank": "空白",
        "notBlank": "非空白",
        "andCondition": "且",
        "orCondition": "或",
        "loadingOoo": "加载中…",
    },
}


def language(lang: str | None) -> str:
    """The language to use: ``lang`` if known, else English."""
    return lang if lang in LABELS else "en"


def t(lang: str | None, key: str, **values: object) -> str:
    text = LABELS[language(lang)][key]
    return text.format(**values) if values else text


def tier_name(lang: str | None, tier: int) -> str:
    return t(lang, f"tier_{int(tier)}")
