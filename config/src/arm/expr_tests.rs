use super::*;

fn eval(template: Value, given: &[(&str, Value)], s: &str) -> R<Value> {
    let given: BTreeMap<String, Value> = given.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    let scope = Scope::new(template.get("parameters"), template.get("variables"), &given);
    scope.string(s)
}

fn t() -> Value {
    json!({
        "parameters": {
            "siteName": {"type": "string", "defaultValue": "shop"},
            "port": {"type": "int", "defaultValue": 8080},
            "useRedis": {"type": "bool", "defaultValue": true},
            "registry": {"type": "string"},
            "tier": {"type": "string", "defaultValue": "[toLower('P1V3')]"}
        },
        "variables": {
            "prefix": "[concat(parameters('siteName'), '-')]",
            "image": "[format('{0}.azurecr.io/{1}:{2}', parameters('registry'), 'web', '1.4')]",
            "names": {"web": "[concat(variables('prefix'), 'web')]"},
            "loop": "[variables('loop')]"
        }
    })
}

#[test]
fn what_bicep_and_hand_written_templates_use() {
    let ok = |s: &str| eval(t(), &[("registry", json!("myacr"))], s).unwrap();
    assert_eq!(ok("[format('{0}/{1}', parameters('siteName'), 'main')]"), "shop/main");
    assert_eq!(ok("[concat(parameters('siteName'), '/', 'redis')]"), "shop/redis");
    assert_eq!(ok("[concat(variables('prefix'), 'x')]"), "shop-x");
    assert_eq!(ok("[variables('names').web]"), "shop-web");
    assert_eq!(ok("[variables('names')['web']]"), "shop-web");
    assert_eq!(ok("[variables('image')]"), "myacr.azurecr.io/web:1.4");
    assert_eq!(ok("[string(parameters('port'))]"), "8080");
    assert_eq!(ok("[if(parameters('useRedis'), 'on', 'off')]"), "on");
    assert_eq!(ok("[if(equals(parameters('siteName'), 'x'), reference('never'), 'lazy')]"), "lazy");
    assert_eq!(ok("[and(not(empty(parameters('siteName'))), or(false(), true()))]"), true);
    assert_eq!(ok("[toUpper(replace('a-b', '-', '_'))]"), "A_B");
    assert_eq!(ok("[int('42')]"), 42);
    assert_eq!(ok("[bool('True')]"), true);
    assert_eq!(ok("[coalesce(null(), 'second')]"), "second");
    assert_eq!(ok("[parameters('tier')]"), "p1v3", "a default that is itself an expression");
    assert_eq!(ok("[resourceGroup().location]"), "local");
    assert_eq!(ok("[format('{0}-{1}', 'app', uniqueString(resourceGroup().id))]").as_str().unwrap().len(), 4 + 13);
    assert_eq!(ok("[format('{{literal}} {0}', 'x')]"), "{literal} x");
    assert_eq!(ok("[concat('it''s', ' ok')]"), "it's ok");
    assert_eq!(ok("[[not an expression]"), "[not an expression]");
    assert_eq!(ok("plain"), "plain");
}

#[test]
fn given_values_take_the_declared_type() {
    assert_eq!(eval(t(), &[("port", json!("9000")), ("registry", json!("r"))], "[add(parameters('port'), 1)]").unwrap(), 9001);
    assert!(matches!(eval(t(), &[("port", json!("nine"))], "[parameters('port')]"), Err(EvalError::Invalid(_))));
}

#[test]
fn what_only_a_deployment_knows_is_never_made_up() {
    let unknown = |s: &str| match eval(t(), &[], s) {
        Err(EvalError::Unknown { what, supply }) => (what, supply),
        other => panic!("{s}: {other:?}"),
    };
    let (what, _) = unknown("[reference(resourceId('Microsoft.Cache/redis', 'c')).hostName]");
    assert_eq!(what, "reference(resourceId('Microsoft.Cache/redis', 'c'))");
    let (what, _) = unknown("[listKeys('acct', '2023-01-01').keys[0].value]");
    assert_eq!(what, "listKeys('acct', '2023-01-01')");
    let (what, supply) = unknown("[parameters('registry')]");
    assert!(what.contains("registry") && supply.contains("--parameter registry="), "{what} {supply}");
    assert!(matches!(eval(t(), &[], "[variables('loop')]"), Err(EvalError::Invalid(m)) if m.contains("itself")));
    assert!(matches!(eval(t(), &[], "[parameters('nope')]"), Err(EvalError::Invalid(m)) if m.contains("no parameter 'nope'")));
    assert!(matches!(eval(t(), &[], "[concat('a']"), Err(EvalError::Invalid(_))));
}
