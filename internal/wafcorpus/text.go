package wafcorpus

// Phrase banks for the benign corpus: what users of the platform's apps type
// into forms (support tickets, order notes, reviews, comments, addresses),
// in many languages, with the punctuation people use.

// sentences holds, per language, short texts of the kind apps receive.
var sentences = map[string][]string{
	"en": {
		"Hi team, the invoice for order #4521 shows the wrong VAT rate (20% instead of 5%). Could you fix it?",
		"Please leave the parcel at the back door; the front gate is locked after 6 pm.",
		"Great product! Battery lasts ~2 days & charging is fast. Would buy again :)",
		"Can't log in since yesterday's update - it says \"session expired\" every time.",
		"Meeting moved to Thu 14:30 (room B-12). Agenda: Q3 review, hiring plan, budget.",
		"Customer asked whether we ship to P.O. boxes in Alaska and Hawaii.",
		"Don't forget: the warehouse closes early on Friday, so pick-ups are until 3:00.",
		"The report's totals don't match the dashboard: $12,450.00 vs $12,045.00.",
		"Replace the filter every 3-6 months, or sooner if you have pets/allergies.",
		"Thanks for the quick reply! I'll try resetting the router and get back to you.",
		"Order status changed from 'pending' to 'shipped' without a tracking number?",
		"We'd like 2 more seats on the Pro plan for our new hires (starting 1 March).",
	},
	"de": {
		"Die Lieferung kam beschädigt an, bitte um Ersatz oder Gutschrift.",
		"Können wir den Termin auf nächste Woche verschieben? Am Dienstag passt es nicht.",
		"Rechnungsadresse: Müller GmbH, Hauptstraße 5, 80331 München.",
		"Das Gerät lässt sich nicht einschalten, obwohl der Akku voll geladen ist.",
		"Größe 42 war zu klein – bitte umtauschen gegen 43.",
		"Vielen Dank für die schnelle Bearbeitung! Schöne Grüße aus Köln.",
	},
	"fr": {
		"Bonjour, je n'ai pas reçu ma commande n° 3381 ; pouvez-vous vérifier ?",
		"L'été dernier, nous avons réservé la même chambre : vue sur la mer, s'il vous plaît.",
		"Le colis est arrivé abîmé, mais le contenu est intact. Merci quand même !",
		"C'est déjà la troisième fois que l'application plante à l'ouverture.",
		"Pourriez-vous m'envoyer la facture au format PDF ? Merci d'avance.",
		"Rendez-vous à 9 h 30 devant l'entrée principale (bâtiment C).",
	},
	"es": {
		"¿Cuándo llegará mi pedido? Lo compré hace más de dos semanas.",
		"La talla M me queda pequeña; ¿puedo cambiarla por una L?",
		"¡Excelente servicio! El técnico llegó puntual y resolvió todo en 20 minutos.",
		"Necesito factura a nombre de Pérez & Hijos S.A., NIF B-12345678.",
		"No puedo restablecer la contraseña: el correo nunca llega.",
	},
	"pt": {
		"Olá! Gostaria de saber se vocês entregam em São Paulo aos sábados.",
		"O produto veio com defeito, a tela não liga. Como faço a devolução?",
		"Ótimo atendimento, resolveram meu problema rapidinho. Obrigado!",
		"Preciso alterar o endereço de entrega para Rua das Flores, 123 - apto 45.",
	},
	"it": {
		"Buongiorno, l'ordine è arrivato ma manca un articolo (cod. 7789).",
		"Si può pagare alla consegna? Non ho una carta di credito.",
		"Perché l'app mi chiede di accedere di nuovo ogni volta?",
		"Grazie mille per l'assistenza, tutto risolto!",
	},
	"nl": {
		"Mijn pakket is nog steeds niet bezorgd, terwijl de status 'afgeleverd' zegt.",
		"Kunnen jullie de factuur op naam van de B.V. zetten? Alvast bedankt.",
		"De app crasht als ik een foto probeer te uploaden.",
	},
	"pl": {
		"Dzień dobry, zamówienie nr 5512 przyszło niekompletne – brakuje ładowarki.",
		"Czy mogę zmienić termin dostawy na przyszły poniedziałek?",
		"Świetna obsługa, polecam! Paczka dotarła w 24 godziny.",
	},
	"tr": {
		"Siparişim hâlâ kargoya verilmedi, ne zaman gönderilecek?",
		"Ürün çok güzel ama beden biraz küçük geldi; değişim yapabilir miyim?",
		"Şifremi sıfırlama e-postası gelmiyor, yardımcı olur musunuz?",
	},
	"ru": {
		"Здравствуйте! Заказ №4417 пришёл с повреждённой упаковкой.",
		"Подскажите, пожалуйста, можно ли оплатить картой при получении?",
		"Приложение не открывается после обновления, что делать?",
		"Спасибо за быструю доставку, всё отлично!",
	},
	"uk": {
		"Доброго дня! Чи можна змінити адресу доставки на Київ, вул. Хрещатик, 10?",
		"Дякую за допомогу, проблему вирішено.",
	},
	"el": {
		"Καλησπέρα, η παραγγελία μου δεν έχει φτάσει ακόμα. Μπορείτε να ελέγξετε;",
		"Ευχαριστώ πολύ για τη γρήγορη εξυπηρέτηση!",
	},
	"ar": {
		"مرحباً، لم يصلني الطلب رقم 2231 حتى الآن، هل يمكنكم التحقق؟",
		"شكراً جزيلاً على الخدمة الممتازة!",
		"أرغب في تغيير عنوان التوصيل إلى الرياض، حي النخيل.",
	},
	"he": {
		"שלום, ההזמנה שלי עדיין לא הגיעה. אפשר לבדוק?",
		"תודה רבה על השירות המהיר!",
	},
	"hi": {
		"नमस्ते, मेरा ऑर्डर अभी तक नहीं पहुँचा है। कृपया स्थिति बताएं।",
		"बहुत अच्छी सेवा, धन्यवाद!",
	},
	"zh": {
		"您好，我的订单（编号 8812）还没有发货，请问什么时候能发？",
		"产品质量很好，物流也很快，五星好评！",
		"请把发票抬头改成“上海某某科技有限公司”。",
		"登录时一直提示“密码错误”，但我确定密码是对的。",
	},
	"ja": {
		"お世話になっております。注文番号 5521 の配送状況を教えてください。",
		"商品は無事に届きました。ありがとうございました！",
		"アプリを更新してからログインできません（エラーコード：E-104）。",
		"サイズが合わなかったので、交換をお願いできますか？",
	},
	"ko": {
		"안녕하세요, 주문한 상품이 아직 도착하지 않았습니다. 확인 부탁드립니다.",
		"배송이 정말 빨랐어요! 다음에도 이용할게요.",
		"비밀번호 재설정 메일이 오지 않아요.",
	},
	"th": {
		"สวัสดีครับ สินค้ายังไม่ถึงเลย ช่วยตรวจสอบให้หน่อยครับ",
		"ขอบคุณสำหรับบริการที่รวดเร็วค่ะ",
	},
	"vi": {
		"Xin chào, đơn hàng của tôi vẫn chưa được giao. Vui lòng kiểm tra giúp.",
		"Sản phẩm rất tốt, giao hàng nhanh. Cảm ơn shop!",
	},
	"id": {
		"Halo, pesanan saya belum sampai padahal sudah 5 hari. Mohon dicek.",
		"Terima kasih, pelayanannya cepat dan ramah!",
	},
	"sv": {
		"Hej! Kan ni skicka en ny faktura? Den förra hade fel adress.",
		"Tack för snabb leverans, allt fungerar perfekt.",
	},
	"fi": {
		"Hei, tilaukseni ei ole vieläkään saapunut. Voisitteko tarkistaa?",
	},
	"cs": {
		"Dobrý den, objednávka dorazila poškozená. Jak mám postupovat?",
	},
}

// languages is the order in which languages are drawn (map order would not
// be deterministic).
var languages = []string{"en", "de", "fr", "es", "pt", "it", "nl", "pl", "tr", "ru", "uk", "el", "ar", "he", "hi", "zh", "ja", "ko", "th", "vi", "id", "sv", "fi", "cs"}

var firstNames = []string{"Anna", "Liam", "Sofía", "Jean-Luc", "Zoë", "Chloé", "Mateus", "Łukasz", "Ömer", "Дмитрий", "Αλέξανδρος", "محمد", "דוד", "राहुल", "伟", "さくら", "민준", "สมชาย", "Nguyễn Văn", "Björn", "Siobhán", "Aoife", "José María", "Dương", "Ngozi", "Kwame", "Priya"}

var lastNames = []string{"O'Brien", "Müller", "García-López", "D'Angelo", "van der Berg", "Øster", "Nowak", "Şahin", "Иванов", "Παπαδόπουλος", "Al-Farsi", "Cohen", "Sharma", "王", "佐藤", "김", "Jaidee", "Trần", "Andersson", "Ní Bhriain", "O'Connor-Smith", "Okafor", "St. John", "Mc Donald", "de la Cruz"}

var cities = []string{"München", "São Paulo", "Kraków", "İstanbul", "Москва", "Αθήνα", "القاهرة", "תל אביב", "मुंबई", "北京", "東京", "서울", "กรุงเทพ", "Hà Nội", "Jakarta", "Zürich", "Montréal", "Reykjavík", "Cork", "Lagos", "Austin", "San José", "Fort-de-France"}

var streets = []string{"Hauptstraße 5", "12 O'Connell St.", "Rua das Flores, 123 - apto 45", "ul. Długa 7/3", "1600 Amphitheatre Pkwy", "Calle 8 #45-12", "221B Baker Street", "Av. Paulista, 1578", "Königsallee 92a", "3-2-1 Nishi-Shinjuku", "Flat 4, 10 Rue de l'Église", "P.O. Box 442"}

var products = []string{"Wireless Mouse (2.4 GHz)", "USB-C Hub 7-in-1", "Chef's Knife 20 cm", "Kids' Rain Jacket – Size 110/116", "Café Crème Beans 1 kg", "Noise-Cancelling Headphones", "4K Monitor 27\"", "Standing Desk 120×60", "Yoga Mat (6 mm)", "Tea Set \"Sakura\"", "Organic Olive Oil 500 ml", "T-Shirt 100% Cotton, M", "Running Shoes Men's 44 ½", "Laptop Sleeve 13–14\""}

var searchTerms = []string{
	"blue running shoes", "c++ tutorial", "rock & roll", "O'Reilly books", "50% off", "what is 2+2?",
	"size: 10-12", "jane.doe@example.com", "#summer2024", "\"exact phrase\"", "AT&T plans", "R&D budget",
	"Q&A session", "foo-bar_baz", "(555) 123-4567", "1/2 inch pipe", "café crème", "naïve bayes", "straße",
	"東京 ラーメン", "ремонт iPhone", "drop shipping", "union station chicago", "select committee report",
	"update my address", "delete account", "insert coin", "order by price", "from paris to rome", "where is my order",
	"black friday deals!!!", "C# vs. Java", "node.js jobs", "user@host", "10:30am-11:45am", "$100-$200",
	"price < 50", "rating >= 4", "kids' toys", "men's shoes", "ä ö ü ß", "emoji 🎉 party", "100% wool",
	"COVID-19 test", "new york, ny", "mother's day gifts", "1+1 offer", "é è ê ë", "München Hbf",
	"how to cook rice?", "winter jacket -sale", "\"red dress\" size:m", "ticket #4521", "v2.3.1 release notes",
}

var tags = []string{"urgent", "billing", "vip", "follow-up", "bug", "feature-request", "q3", "emea", "b2b", "returns", "onboarding", "churn-risk"}

var statuses = []string{"open", "pending", "in_progress", "resolved", "closed", "on_hold"}

var currencies = []string{"EUR", "USD", "GBP", "JPY", "BRL", "PLN", "TRY", "INR", "CNY", "KRW"}

// markdown holds rich-text bodies as Markdown editors send them.
var markdown = []string{
	"## Steps to reproduce\n\n1. Open **Settings** → *Billing*\n2. Click `Download invoice`\n3. Nothing happens\n\n> Expected: the PDF downloads.\n\nBrowser: Firefox 128, macOS 14.",
	"Thanks @maria! I've updated the [spec](https://docs.example.com/spec#section-2) — see the table:\n\n| Plan | Seats | Price |\n|------|-------|-------|\n| Pro | 10 | €99 |\n| Team | 50 | €399 |",
	"**Release notes v2.4**\n\n- Faster search (~30%)\n- New *dark mode*\n- Fixed: dates shown as `NaN` in Safari\n\n_Known issue_: exports over 10k rows time out.",
	"Quick summary:\n\n* customer: ACME Corp.\n* contact: jane.doe@acme.example\n* next step: demo on **Tue 10:00** (CET)\n\n---\n\nNotes from the call are in the shared folder.",
	"Here's the config we use:\n\n```json\n{\"retries\": 3, \"timeout\": \"30s\", \"regions\": [\"eu-west\", \"us-east\"]}\n```\n\nWorks fine so far.",
	"> Can we get the report weekly instead of daily?\n\nYes — I've changed the schedule to every **Monday 08:00**. Let me know if that's OK.",
	"### Meeting notes (2024-03-14)\n\n1. Budget approved ✅\n2. Hiring: 2 engineers, 1 designer\n3. Launch date: ~~April~~ **May 6**\n\nAction items assigned in the tracker.",
}

// richHTML holds rich-text bodies as WYSIWYG editors send them.
var richHTML = []string{
	"<p>Hello <strong>team</strong>,</p><p>please review the attached proposal before <em>Friday</em>.</p>",
	"<h2>Product description</h2><ul><li>100% organic cotton</li><li>Machine washable at 30°C</li><li>Made in Portugal</li></ul>",
	"<p>See our <a href=\"https://www.example.com/terms\">terms &amp; conditions</a> for details.</p>",
	"<blockquote>The best coffee in town!</blockquote><p>— Anna, <i>Berlin</i></p>",
	"<p>Opening hours:<br>Mon–Fri 9:00–18:00<br>Sat 10:00–14:00</p>",
	"<ol><li>Preheat oven to 180&nbsp;°C</li><li>Mix flour &amp; sugar</li><li>Bake 25 min</li></ol>",
	"<p><span>Price:</span> <b>€ 49,90</b> <s>€ 59,90</s></p>",
	"<table><tr><th>Size</th><th>Chest (cm)</th></tr><tr><td>M</td><td>96–101</td></tr></table>",
}

var userAgents = []string{
	"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
	"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
	"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
	"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
	"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
	"okhttp/4.12.0",
	"axios/1.7.2",
	"OrdersApp/3.2.1 (iOS 17.5; iPhone15,2)",
	"Go-http-client/2.0",
}

var acceptLanguages = []string{"en-US,en;q=0.9", "de-DE,de;q=0.9,en;q=0.8", "fr-FR,fr;q=0.9", "pt-BR,pt;q=0.9,en;q=0.7", "ja-JP,ja;q=0.9", "zh-CN,zh;q=0.9", "ar-SA,ar;q=0.9,en;q=0.5", "tr-TR,tr;q=0.9"}
