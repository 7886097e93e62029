// UI strings: Japanese first, English as the toggle. Keys are English-ish identifiers.
const STRINGS = {
  ja: {
    title: "ガードレール ダッシュボード", signIn: "サインイン", signOut: "サインアウト",
    credential: "テナント管理キー（gra-…）またはプラットフォーム管理トークン", tenantIdOpt: "テナントID（管理トークンの場合・任意）",
    signInHelp: "管理APIと同じ資格情報でサインインします。キーはブラウザに保存されません。",
    sessionExpired: "セッションの有効期限が切れました。もう一度サインインしてください。",
    overview: "概要", logs: "判定ログ", categories: "カテゴリ", keys: "APIキー", tenant: "テナント",
    range: "期間", r1h: "1時間", r24h: "24時間", r7d: "7日間", r30d: "30日間", r90d: "90日間", custom: "指定",
    apply: "適用", since: "開始", until: "終了", judgements: "判定数", flagged: "フラグ", flagRate: "フラグ率",
    cacheHitRate: "キャッシュヒット率", p50: "レイテンシ p50", p95: "レイテンシ p95",
    volumeChart: "判定数とフラグ数", categoryRateChart: "カテゴリ別フラグ率（全判定に対する割合）",
    latencyChart: "レイテンシ（ms）", cacheChart: "キャッシュヒット率", perCategory: "カテゴリ別",
    category: "カテゴリ", all: "すべて", onlyFlagged: "フラグあり", notFlagged: "フラグなし", direction: "方向",
    input: "入力", output: "出力", search: "テキスト検索", filter: "絞り込み", reset: "リセット",
    time: "日時", text: "テキスト", latency: "レイテンシ", next: "次へ", prev: "前へ", exportCsv: "CSVエクスポート",
    noRows: "該当する判定はありません。", detail: "判定の詳細", back: "戻る", score: "スコア", threshold: "しきい値",
    reason: "理由", prompt: "ユーザーの発言（文脈）", model: "モデル", cached: "キャッシュ", yes: "はい", no: "いいえ",
    apiKey: "APIキー", textMode: "保存形式", id: "ID", name: "名前", definition: "定義（判定プロンプトにそのまま入ります）",
    enabled: "有効", disabled: "無効", defaultCat: "標準", customCat: "独自", edit: "編集", newCategory: "カテゴリを追加",
    save: "保存", delete: "削除", saved: "保存しました。", deleted: "削除しました。", positives: "違反する例（1行に1つ）",
    negatives: "違反しない紛らわしい例（1行に1つ）", playground: "プレイグラウンド（保存前に下書きで判定）",
    testText: "テスト用テキスト", tryDraft: "下書きで判定", before: "保存済み", after: "下書き", change: "変化",
    expected: "期待", positive: "違反", negative: "非違反", improved: "改善", degraded: "悪化", same: "変化なし", new: "新規",
    degradedWarn: "この変更で例文の判定が悪化します（{n}件）。保存前に確認してください。",
    summary: "例文の正解数: 保存済み {b} / {t} → 下書き {a} / {t}", noExamples: "例文がありません。例文を追加すると比較できます。",
    running: "判定中…", confirmDelete: "このカテゴリを削除しますか？", kind: "種類", judgeKind: "判定用",
    adminKind: "管理用", prefix: "プレフィックス", created: "作成", lastUsed: "最終使用", status: "状態",
    active: "有効", revoked: "失効", revoke: "失効させる", issue: "発行", issueKey: "キーを発行",
    keyShownOnce: "このキーは今だけ表示されます。安全な場所に保存してください。", confirmRevoke: "キー {p}… を失効させますか？",
    currentKey: "（このセッションのキー）", lang: "English", loading: "読み込み中…", error: "エラー",
    flaggedCats: "フラグのカテゴリ", copy: "コピー", cases: "件",
    defaultNote: "標準カテゴリは削除できません。使わない場合は「有効」を外して保存してください。",
    err_invalid_api_key: "キーが正しくないか、失効しています。", err_wrong_key_kind: "判定用のAPIキーではサインインできません。テナント管理キー（gra-…）を使ってください。",
    err_csrf_failed: "ページの有効期限が切れました。再読み込みしてください。", err_category_exists: "そのIDのカテゴリは既にあります。",
    err_too_many_categories: "独自カテゴリの上限に達しています。", err_model_unavailable: "判定モデルに接続できません。しばらくしてから再試行してください。",
    err_model_timeout: "判定モデルの応答が時間内にありませんでした。", err_tenant_not_found: "テナントが見つかりません。",
  },
  en: {
    title: "Guardrail dashboard", signIn: "Sign in", signOut: "Sign out",
    credential: "Tenant admin key (gra-…) or platform admin token", tenantIdOpt: "Tenant id (admin token only, optional)",
    signInHelp: "Use the same credentials as the management API. The key is not stored in the browser.",
    sessionExpired: "Your session has expired. Please sign in again.",
    overview: "Overview", logs: "Judgement log", categories: "Categories", keys: "API keys", tenant: "Tenant",
    range: "Range", r1h: "1 hour", r24h: "24 hours", r7d: "7 days", r30d: "30 days", r90d: "90 days", custom: "Custom",
    apply: "Apply", since: "From", until: "To", judgements: "Judgements", flagged: "Flagged", flagRate: "Flag rate",
    cacheHitRate: "Cache hit rate", p50: "Latency p50", p95: "Latency p95",
    volumeChart: "Judgements and flags", categoryRateChart: "Flag rate per category (share of all judgements)",
    latencyChart: "Latency (ms)", cacheChart: "Cache hit rate", perCategory: "Per category",
    category: "Category", all: "All", onlyFlagged: "Flagged", notFlagged: "Not flagged", direction: "Direction",
    input: "Input", output: "Output", search: "Text search", filter: "Filter", reset: "Reset",
    time: "Time", text: "Text", latency: "Latency", next: "Next", prev: "Previous", exportCsv: "Export CSV",
    noRows: "No judgements match.", detail: "Judgement detail", back: "Back", score: "Score", threshold: "Threshold",
    reason: "Reason", prompt: "User prompt (context)", model: "Model", cached: "Cached", yes: "yes", no: "no",
    apiKey: "API key", textMode: "Stored as", id: "Id", name: "Name", definition: "Definition (used verbatim in the judge prompt)",
    enabled: "Enabled", disabled: "Disabled", defaultCat: "Default", customCat: "Custom", edit: "Edit", newCategory: "Add category",
    save: "Save", delete: "Delete", saved: "Saved.", deleted: "Deleted.", positives: "Violating examples (one per line)",
    negatives: "Look-alikes that do not violate (one per line)", playground: "Playground (judge with the draft before saving)",
    testText: "Test text", tryDraft: "Judge with draft", before: "Saved", after: "Draft", change: "Change",
    expected: "Expected", positive: "violates", negative: "does not", improved: "improved", degraded: "degraded", same: "same", new: "new",
    degradedWarn: "This change makes {n} example(s) worse. Check before saving.",
    summary: "Examples right: saved {b} / {t} → draft {a} / {t}", noExamples: "No examples yet: add some to compare.",
    running: "Judging…", confirmDelete: "Delete this category?", kind: "Kind", judgeKind: "judge",
    adminKind: "admin", prefix: "Prefix", created: "Created", lastUsed: "Last used", status: "Status",
    active: "active", revoked: "revoked", revoke: "Revoke", issue: "Issue", issueKey: "Issue a key",
    keyShownOnce: "This key is shown only now. Store it somewhere safe.", confirmRevoke: "Revoke key {p}…?",
    currentKey: "(this session's key)", lang: "日本語", loading: "Loading…", error: "Error",
    flaggedCats: "Flagged categories", copy: "Copy", cases: "",
    defaultNote: "Default categories cannot be deleted: untick Enabled and save to stop using one.",
    err_invalid_api_key: "Unknown or revoked key.", err_wrong_key_kind: "A judge API key cannot sign in: use a tenant admin key (gra-…).",
    err_csrf_failed: "This page has expired: reload it.", err_category_exists: "A category with this id exists already.",
    err_too_many_categories: "The limit of custom categories is reached.", err_model_unavailable: "The judge model is unreachable; retry shortly.",
    err_model_timeout: "The judge model did not answer in time.", err_tenant_not_found: "No such tenant.",
  },
};

let lang = localStorage.getItem("gr-lang") === "en" ? "en" : "ja";

export function t(key, vars = {}) {
  let s = STRINGS[lang][key] ?? STRINGS.ja[key] ?? key;
  for (const [k, v] of Object.entries(vars)) s = s.replaceAll(`{${k}}`, String(v));
  return s;
}

export function currentLang() { return lang; }

// A known error code in the UI language; otherwise the server's own message.
export function errorText(code, fallback) {
  const key = "err_" + code;
  return STRINGS[lang][key] ?? fallback;
}

export function toggleLang() {
  lang = lang === "ja" ? "en" : "ja";
  localStorage.setItem("gr-lang", lang);
  document.documentElement.lang = lang;
  document.title = t("title");
}

document.documentElement.lang = lang;
